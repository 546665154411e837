import os
import re
import stat

from evolve.files import read_json, write_atomic


def test_write_atomic_replaces_keeps_the_mode_and_leaves_no_temp_file(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("old\n")
    os.chmod(script, 0o755)
    write_atomic(script, "new\n")
    assert script.read_text() == "new\n" and stat.S_IMODE(script.stat().st_mode) == 0o755
    fresh = tmp_path / "sub" / "config.yaml"
    write_atomic(fresh, "a: 1\n")  # a new file is readable by others, not mkstemp's private 600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["config.yaml", "run.sh", "sub"]


def test_read_json_is_empty_for_missing_torn_or_non_object_files(tmp_path):
    assert read_json(tmp_path / "none.json") == {}
    (tmp_path / "torn.json").write_text('{"a": 1')
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "torn.json") == read_json(tmp_path / "list.json") == {}
    assert read_json(tmp_path / "ok.json") == {"a": 1}


def test_read_text_refuses_what_would_hang_or_never_end_and_names_the_file_and_line(tmp_path):
    # run directories are written by launched code: a FIFO would block an open, /dev/zero a read, forever
    import pytest

    from evolve.files import FileFormatError, load_json_object, read_text

    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "bytes.json").write_bytes(b'{"a":\n "\xff"}')
    (tmp_path / "big.json").write_text("x" * 101)
    (tmp_path / "deep.json").write_text("[" * 100_000)
    os.symlink("/dev/zero", tmp_path / "zero.json")
    for name, needle in [("fifo.json", "not a regular file"), ("zero.json", "not a regular file"),
                         ("dir.json", "is a directory"), ("bytes.json", "line 2: not UTF-8 text (byte 0xff)")]:
        with pytest.raises(FileFormatError, match=re.escape(needle)) as e:
            read_text(tmp_path / name)
        assert str(e.value).startswith(f"{tmp_path / name}: ")
        assert read_json(tmp_path / name) == {}  # the forgiving read forgives these too (it raised on bad bytes)
    with pytest.raises(FileFormatError, match="larger than 100 bytes"):
        read_text(tmp_path / "big.json", limit=100)
    with pytest.raises(FileFormatError, match="deep.json: JSON nested too deeply"):
        load_json_object(tmp_path / "deep.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(FileFormatError, match="list.json: expected a JSON object, got list"):
        load_json_object(tmp_path / "list.json")
    assert load_json_object(tmp_path / "none.json") == {}
