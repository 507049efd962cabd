import torch

from adaptlab.data import Chat, Instruction
from adaptlab.data.packing import collate_packed, collate_padded, pack
from adaptlab.data.templates import IGNORE, tokenize_record
from adaptlab.train.objectives.sft import response_loss


def test_loss_mask_covers_only_the_answer_and_its_end_of_turn(tiny):
    _, tok = tiny
    ex = tokenize_record(Instruction("Say hi", "hi there"), tok)
    target = tok.decode([t for t in ex.labels if t != IGNORE])
    assert target.startswith("hi there") and tok.eos_token in target
    assert "Say hi" not in target
    assert ex.labels[-2] == tok.eos_token_id or ex.labels[-1] == tok.eos_token_id


def test_multi_turn_chat_learns_every_assistant_turn(tiny):
    _, tok = tiny
    chat = Chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": "first"},
                 {"role": "user", "content": "b"}, {"role": "assistant", "content": "second"}])
    target = tok.decode([t for t in tokenize_record(chat, tok).labels if t != IGNORE])
    assert "first" in target and "second" in target and "b" not in target.replace(tok.eos_token, "")


def test_packed_loss_equals_unpacked_loss(tiny):
    model, tok = tiny
    model = model.float()
    records = [Instruction(f"Question {i}: what is {i} plus {i}?", f"It is {2 * i}." * (i % 3 + 1)) for i in range(7)]
    examples = [tokenize_record(r, tok) for r in records]
    rows = pack(examples, seq_len=256, pad_id=tok.pad_token_id)
    assert len(rows) < len(examples)  # something was actually packed together
    packed = collate_packed(rows, 256, tok.pad_token_id)
    padded = collate_padded(examples, tok.pad_token_id)
    assert packed.n_targets == padded.n_targets
    with torch.no_grad():
        packed_loss = response_loss(model, packed) / packed.n_targets
        padded_loss = response_loss(model, padded) / padded.n_targets
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-5)


def test_packing_without_position_restarts_would_differ(tiny):
    """The check above can fail: packing with plain positions leaks attention across examples."""
    model, tok = tiny
    model = model.float()
    examples = [tokenize_record(Instruction(f"q{i}", f"answer number {i}"), tok) for i in range(3)]
    packed = collate_packed(pack(examples, 256, tok.pad_token_id), 256, tok.pad_token_id)
    leaky = type(packed)(packed.input_ids, packed.labels, torch.arange(256)[None].expand_as(packed.input_ids),
                         None, packed.n_real_tokens)
    with torch.no_grad():
        assert not torch.allclose(response_loss(model, packed), response_loss(model, leaky))
