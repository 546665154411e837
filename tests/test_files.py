import os
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
