"""Reading problem records: JSON lines, parquet, `datasets` directories, and bad inputs."""

import importlib.util

import pytest

from mrt_jax.data import DataError, load_records, write_jsonl

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
HAS_DATASETS = importlib.util.find_spec("datasets") is not None
ROWS = [{"question": "1+1?", "solution": 2, "level": 1},
        {"question": "2+2?", "solution": "4", "level": 2}]


def test_jsonl_with_configured_fields(tmp_path):
  path = write_jsonl(str(tmp_path / "sub" / "train.jsonl"), ROWS)
  with open(path, "a", encoding="utf-8") as f:
    f.write("\n   \n")  # blank lines are skipped
  records = load_records(path, problem_field="question", answer_field="solution")
  assert records == ROWS


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.jsonl' does not exist"):
    load_records(str(tmp_path / "nope.jsonl"))


def test_empty_dataset(tmp_path):
  path = tmp_path / "empty.jsonl"
  path.write_text("\n\n")
  with pytest.raises(DataError, match=f"{path} has no records"):
    load_records(str(path))


def test_missing_answer_field_names_file_field_and_available_fields(tmp_path):
  path = write_jsonl(str(tmp_path / "train.jsonl"), ROWS)
  with pytest.raises(DataError) as e:
    load_records(path, problem_field="question", answer_field="answer")
  message = str(e.value)
  assert path in message and "record 0" in message and "'answer'" in message
  assert "['level', 'question', 'solution']" in message


def test_null_field_counts_as_missing(tmp_path):
  path = write_jsonl(str(tmp_path / "train.jsonl"), [{"problem": "p", "answer": None}])
  with pytest.raises(DataError, match="record 0 has no field 'answer'"):
    load_records(path)


@pytest.mark.parametrize("line, match", [
    ("{not json", r"bad.jsonl:2: invalid JSON"),
    ("[1, 2]", r"bad.jsonl:2: a JSON list; expected an object"),
])
def test_malformed_lines(tmp_path, line, match):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"problem": "p", "answer": "a"}\n' + line + "\n")
  with pytest.raises(DataError, match=match):
    load_records(str(path))


def test_unknown_format_and_plain_directory(tmp_path):
  path = tmp_path / "train.csv"
  path.write_text("problem,answer\n")
  with pytest.raises(DataError, match="unknown dataset format"):
    load_records(str(path))
  with pytest.raises(DataError, match="directory without dataset_info.json"):
    load_records(str(tmp_path))


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed (parquet support is "
                    "optional: pip install pyarrow)")
def test_parquet(tmp_path):
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "train.parquet")
  rows = [{"question": r["question"], "solution": str(r["solution"])} for r in ROWS]
  pq.write_table(pa.Table.from_pylist(rows), path)
  assert load_records(path, problem_field="question", answer_field="solution") == rows


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed: the missing-dependency error "
                    "cannot be shown")
def test_parquet_without_pyarrow_says_what_to_install(tmp_path):
  path = tmp_path / "train.parquet"
  path.write_bytes(b"PAR1")
  with pytest.raises(DataError, match="needs pyarrow: pip install pyarrow"):
    load_records(str(path))


@pytest.mark.skipif(not HAS_DATASETS, reason="datasets is not installed (`datasets` "
                    "directories are optional: pip install datasets)")
def test_datasets_directory(tmp_path):
  import datasets  # pylint: disable=g-import-not-at-top
  rows = [{"question": r["question"], "solution": str(r["solution"])} for r in ROWS]
  datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "single"))
  assert load_records(str(tmp_path / "single"), problem_field="question",
                      answer_field="solution") == rows
  datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(
      str(tmp_path / "dict"))
  assert load_records(str(tmp_path / "dict"), problem_field="question",
                      answer_field="solution") == rows
  with pytest.raises(DataError, match=r"splits \['train'\]; expected split 'test'"):
    load_records(str(tmp_path / "dict"), split="test")


@pytest.mark.skipif(HAS_DATASETS, reason="datasets is installed: the missing-dependency error "
                    "cannot be shown")
def test_datasets_directory_without_datasets_says_what_to_install(tmp_path):
  (tmp_path / "dataset_info.json").write_text("{}")
  with pytest.raises(DataError, match="needs datasets: pip install datasets"):
    load_records(str(tmp_path))
