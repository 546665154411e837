"""Finding a competition: our flat form with competition.yaml, MLE-bench's prepared layout, inference from
sample_submission.csv (said in notes), and every way a competition folder can be wrong (one line)."""

from __future__ import annotations

import pytest

from evolve.competition import CompetitionError, find_competition, grade
from evolve.competition.answers import load_answers
from tests.competitions import make_competition, write_csv

ANSWERS = [[1, 1.0], [2, 2.0], [3, 4.0]]


def test_the_flat_form_reads_competition_yaml(tmp_path):
    comp = make_competition(tmp_path / "house", ANSWERS, header=["Id", "Price"],
                            yaml="id: house-prices\nmetric: rmse\nid_column: Id\ntarget_columns: [Price]\n")
    c = find_competition(comp)
    assert (c.id, c.layout, c.metric_name, c.id_column, c.target_columns) == \
        ("house-prices", "flat", "rmse", "Id", ["Price"])
    assert c.lower_is_better is True and c.answers == comp / "private" / "answers.csv"
    assert c.notes == []  # nothing was inferred


def test_without_competition_yaml_id_and_columns_are_inferred_and_said(tmp_path):
    comp = make_competition(tmp_path / "titanic", [[7, "yes"], [8, "no"]], header=["PassengerId", "Survived"])
    c = find_competition(comp, metric="accuracy")
    assert (c.id, c.id_column, c.target_columns) == ("titanic", "PassengerId", ["Survived"])
    assert any("'PassengerId' is the first column of sample_submission.csv" in n for n in c.notes)
    assert any("['Survived'] are the other columns" in n for n in c.notes)
    assert any("'titanic' is the folder's name" in n for n in c.notes)
    write_csv(tmp_path / "sub.csv", ["PassengerId", "Survived"], [[7, "yes"], [8, "yes"]])
    report = grade(c, tmp_path / "sub.csv")
    assert report.score == 0.5 and report.notes == c.notes


def test_mle_bench_layout_with_its_test_csv_answers_and_prepared_folder_given_directly(tmp_path):
    comp = make_competition(tmp_path / "spaceship-titanic", [["0001_01", "True"], ["0002_01", "False"]],
                            header=["PassengerId", "Transported"], layout="mle-bench")
    for path in (comp, comp / "prepared"):
        c = find_competition(path, metric="accuracy")
        assert c.layout == "mle-bench" and c.id == "spaceship-titanic"
        assert c.answers == comp / "prepared" / "private" / "test.csv"
        assert c.public == comp / "prepared" / "public"
    answers = load_answers(c)
    assert answers.ids == ["0001_01", "0002_01"] and answers.truth == [["True", "False"]]


def test_mle_bench_sample_submission_spelling_and_a_yaml_beside_prepared(tmp_path):
    comp = make_competition(tmp_path / "c", [[1, 0.5]], layout="mle-bench", sample_name="sampleSubmission.csv",
                            yaml="metric: mae\n")
    c = find_competition(comp)
    assert c.sample_submission.name == "sampleSubmission.csv" and c.metric_name == "mae"


def test_answers_and_sample_may_be_named_in_yaml(tmp_path):
    comp = make_competition(tmp_path / "c", ANSWERS, answers_name="labels.csv",
                            yaml="metric: rmse\nanswers: labels.csv\n")
    assert find_competition(comp).answers.name == "labels.csv"


def test_lower_is_better_defaults_to_the_metric_and_yaml_overrides_it(tmp_path):
    comp = make_competition(tmp_path / "c", ANSWERS, yaml="metric: rmse\nlower_is_better: false\n")
    assert find_competition(comp).lower_is_better is False
    assert find_competition(make_competition(tmp_path / "d", ANSWERS), metric="accuracy").lower_is_better is False


@pytest.mark.parametrize("setup, needle", [
    (lambda t: None, "no such competition folder"),
    (lambda t: (t / "c").mkdir(), "not a competition folder: expected public/ and private/"),
    (lambda t: (t / "c" / "public").mkdir(parents=True), "private: missing"),
    (lambda t: make_competition(t / "c", ANSWERS), "no competition.yaml, so no metric"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: f2\n"), "metric: 'f2' is not a metric"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\ncolour: red\n"), "colour: unknown key"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\nmetric: mae\n"), "duplicate key 'metric'"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: map@k\n"), "map@k needs k"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\nk: 3\n"), "only map@k takes k"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\nk:\n"), "k: empty"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\nmedals: {gold: 1}\n"), "give exactly gold"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\nanswers: ../x.csv\n"), "inside the compet"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\nid_column: id\ntarget_columns: [z]\n"),
     "differ from competition.yaml's id_column and target_columns"),
    (lambda t: make_competition(t / "c", ANSWERS, yaml="metric: rmse\nmedals: {gold: 1, silver: 2, bronze: 3, "
                                "median: 4}\n", leaderboard=[1, 2]), "both leaderboard.csv and `medals:`"),
    (lambda t: (make_competition(t / "c", ANSWERS, yaml="metric: rmse\n"),
                (t / "c" / "private" / "answers.csv").unlink()), "no answers file (answers.csv or test.csv)"),
    (lambda t: (make_competition(t / "c", ANSWERS, yaml="metric: rmse\n"),
                write_csv(t / "c" / "private" / "test.csv", ["id", "y"], ANSWERS)), "both answers.csv and test.csv"),
    (lambda t: (make_competition(t / "c", ANSWERS, yaml="metric: rmse\n"),
                (t / "c" / "public" / "sample_submission.csv").unlink()), "no sample_submission.csv to read"),
])
def test_a_bad_competition_is_one_line(tmp_path, setup, needle):
    setup(tmp_path)
    with pytest.raises(CompetitionError) as e:
        find_competition(tmp_path / "c")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_metric_flag_next_to_a_yaml_is_refused(tmp_path):
    comp = make_competition(tmp_path / "c", ANSWERS, yaml="metric: rmse\n")
    with pytest.raises(CompetitionError, match="already says the metric"):
        find_competition(comp, metric="mae")


@pytest.mark.parametrize("answers, yaml, needle", [
    ([], "metric: rmse\n", "no rows; the answers need one row per test id"),
    ([[1, 2], [1, 3]], "metric: rmse\n", "id '1' is given twice"),
    ([[1, "x"]], "metric: rmse\n", "row id '1': 'x' is not a number"),
    ([[1, 0.3]], "metric: roc_auc\n", "answers are 0 or 1"),
    ([[1, ""]], "metric: accuracy\n", "row id '1': empty label"),
])
def test_bad_answers_are_the_competitions_fault(tmp_path, answers, yaml, needle):
    comp = make_competition(tmp_path / "c", answers, yaml=yaml)
    with pytest.raises(CompetitionError, match="answers.csv") as e:
        load_answers(find_competition(comp))
    assert needle in str(e.value)


def test_multiclass_log_loss_answers_must_be_one_hot(tmp_path):
    comp = make_competition(tmp_path / "c", [[1, 1, 1, 0]], header=["id", "a", "b", "c"], yaml="metric: log_loss\n")
    with pytest.raises(CompetitionError, match="exactly one 1 per row"):
        load_answers(find_competition(comp))


def test_a_windows_sample_submission_with_bom_and_crlf_gives_clean_column_names(tmp_path):
    comp = make_competition(tmp_path / "c", ANSWERS)
    (comp / "public" / "sample_submission.csv").write_bytes(b"\xef\xbb\xbfid,y\r\n1,0\r\n")
    c = find_competition(comp, metric="rmse")
    assert (c.id_column, c.target_columns) == ("id", ["y"])
