"""`adaptlab chat`: history, /system, /reset, streamed replies equal to transformers' greedy decode."""

import copy

from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.models.decode import SamplingParams
from adaptlab.models.generation import eos_token_ids, generate
from adaptlab.serve.chat import ChatSession


def _reference(model, tok, messages, n):
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return generate(model, tok, [prompt], max_new_tokens=n)[0]


def test_session_keeps_history_and_system_prompt(tiny):
    model, tok = tiny
    session = ChatSession(model.float(), tok, SamplingParams(max_tokens=6, temperature=0), system="Be brief.")
    first = "".join(session.reply("Hello!"))
    assert first == _reference(model, tok, session.messages()[:2], 6)
    second = "".join(session.reply("And again?"))
    assert second == _reference(model, tok, session.messages()[:4], 6)
    assert [t["role"] for t in session.messages()] == ["system", "user", "assistant", "user", "assistant"]
    session.reset()
    session.set_system("")
    assert session.messages() == []
    "".join(session.reply("Hello!"))
    assert session.messages()[0] == {"role": "user", "content": "Hello!"}


def test_cli_chat_streams_and_understands_commands(tiny_dir):
    lines = "Hello!\n/system You are terse.\n/reset\nHi\n/exit\n"
    result = CliRunner().invoke(app, ["chat", "--model", str(tiny_dir), "--temperature", "0", "--max-tokens", "4",
                                      "--dtype", "fp32"], input=lines)
    assert result.exit_code == 0, result.output
    assert result.output.count("model>") == 2 and "system: done" in result.output and "reset: done" in result.output
    bad = CliRunner().invoke(app, ["chat", "--model", "no/such-model-here", "--adapter", "/nonexistent"], input="")
    assert bad.exit_code == 2 and "error" in bad.output


def test_chat_and_server_stop_on_the_same_eos_ids(tiny):
    model, tok = tiny
    model = copy.deepcopy(model)
    model.config.eos_token_id = [tok.eos_token_id, 7]
    model.generation_config.eos_token_id = 9
    assert eos_token_ids(tok, model) == {tok.eos_token_id, 7, 9}
