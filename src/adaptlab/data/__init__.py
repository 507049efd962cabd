"""Records, sources, chat templates with loss masks, and packing."""

from adaptlab.data.builtin import BUILTIN_DATASETS, builtin_path, read_rows
from adaptlab.data.records import Chat, Classification, Instruction, MultipleChoice, Preference, Record, RecordError
from adaptlab.data.sources import data_hash, load_records

__all__ = ["BUILTIN_DATASETS", "Chat", "Classification", "Instruction", "MultipleChoice", "Preference", "Record",
           "RecordError", "builtin_path", "data_hash", "load_records", "read_rows"]
