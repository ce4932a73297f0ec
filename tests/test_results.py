"""Record paths, atomic immutable writes, schema validation naming the bad file."""

import json
import os

import pytest

from kps.configs import make_config
from kps.io import atomic_torch_save, atomic_write_text, check_writable_dir
from kps.results import load_record, load_records, record_path, validate_record, write_record


def make_record(method="kps_ga", seed=0, imbalance=100.0, num_classes=10):
    config = make_config("cifar10-jpeg", method, seed=seed, imbalance=imbalance, epochs=2)
    kps = method.startswith("kps")
    return {
        "schema_version": 1,
        "config": config.to_dict(),
        "dataset_label": "CIFAR-10 (JPEG copy)",
        "num_classes": num_classes,
        "class_names": [f"c{i}" for i in range(num_classes)],
        "train_counts": [500 - 40 * i for i in range(num_classes)],
        "epochs": 2,
        "preset_epochs": 200,
        "test_rule": "argmax cos",
        "top1_error": 60.0,
        "best_top1_error": 55.5,
        "best_epoch": 0,
        "top1_error_rcos": 61.0 if kps else None,
        "per_class_accuracy": [40.0] * num_classes,
        "per_class_accuracy_rcos": [39.0] * num_classes if kps else None,
        "group_errors": {"head": 50.0, "mid": 60.0, "tail": 70.0},
        "per_group_errors": [60.0] * 10,
        "shot_errors": {"many": 55.0, "medium": 70.0, "few": None},
        "history": [{"epoch": 0, "loss": 2.0, "lr": 0.02, "test_error": 55.5}, {"epoch": 1, "loss": 1.9, "lr": 0.04}],
        "device": "cpu (test)",
        "world_size": 1,
        "torch_version": "2.x",
        "git_commit": None,
        "git_dirty": None,
        "wall_time_s": 1.5,
        "started_at": "2024-01-01T00:00:00+00:00",
    }


def test_record_path_layout(tmp_path):
    assert record_path(tmp_path, "cifar10-jpeg", "kps_ga", 100, 3) == tmp_path / "cifar10-jpeg/kps_ga/imb100/seed3.json"
    assert record_path("results", "cifar100", "ce", 50.0, 0).as_posix() == "results/cifar100/ce/imb50/seed0.json"


def test_write_load_round_trip_and_immutability(tmp_path):
    rec = make_record()
    path = write_record(rec, tmp_path)
    assert path == tmp_path / "cifar10-jpeg/kps_ga/imb100/seed0.epochs-2.json"  # a short run's own name
    assert load_record(path) == rec
    assert oct(os.stat(path).st_mode & 0o077) != "0o0"  # not left at mkstemp's private 0600
    with pytest.raises(FileExistsError, match="immutable"):
        write_record(dict(rec, top1_error=1.0), tmp_path)
    assert load_record(path)["top1_error"] == 60.0
    write_record(dict(rec, top1_error=1.0), tmp_path, force=True)
    assert load_record(path)["top1_error"] == 1.0
    write_record(make_record("ce", seed=1, imbalance=50), tmp_path)
    loaded = load_records(tmp_path)
    assert [(r["config"]["method"], r["config"]["seed"]) for r in loaded] == [("ce", 1), ("kps_ga", 0)]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_write_rejects_bad_records_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="bad value for key.*top1_error"):
        write_record(dict(make_record(), top1_error=float("nan")), tmp_path)
    with pytest.raises(ValueError, match="lacks key.*history"):
        write_record({k: v for k, v in make_record().items() if k != "history"}, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.update(per_class_accuracy=[1.0] * 9), "per_class_accuracy"),
        (lambda r: r.update(shot_errors={"many": 1.0}), "shot_errors"),
        (lambda r: r["config"].update(method="nope"), "bad config: unknown method 'nope'"),
        (lambda r: r["config"].pop("lr"), "config keys differ from RunConfig's: lr"),
        (lambda r: r.update(preset_epochs=7), "epochs/preset_epochs disagree"),
        (lambda r: r["history"].append({"epoch": 2, "loss": "x", "lr": 0.1}), "history"),
        (lambda r: r.update(schema_version=99), "schema_version"),
    ],
)
def test_load_names_bad_file(tmp_path, mutate, message):
    rec = make_record()
    mutate(rec)
    path = tmp_path / "cifar10-jpeg/kps_ga/imb100/seed0.json"
    atomic_write_text(path, json.dumps(rec))
    with pytest.raises(ValueError) as err:
        load_records(tmp_path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_load_rejects_broken_json_and_misplaced_record(tmp_path):
    bad = tmp_path / "cifar10-jpeg/ce/imb100/seed0.json"
    atomic_write_text(bad, "{not json")
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        load_record(bad)
    atomic_write_text(bad, json.dumps(make_record("kps_ga")))
    with pytest.raises(ValueError, match="its config belongs at .*kps_ga/imb100/seed0.epochs-2.json"):
        load_records(tmp_path)


def test_validate_accepts_good_record():
    assert validate_record(make_record("ce"))["per_class_accuracy_rcos"] is None


def test_segments_are_optional_but_checked():
    seg = {"from_epoch": 0, "git_commit": "abc", "git_dirty": False, "device": "cpu"}
    rec = make_record("ce")
    assert "segments" not in rec  # records before 2026-11-26 have none
    assert validate_record(dict(rec, segments=[seg, dict(seg, from_epoch=1, git_commit=None)]))  # 2-epoch record
    for bad in ([], [dict(seg, from_epoch=1)], [seg, dict(seg, from_epoch=-1)], [seg, dict(seg, from_epoch=10**6)],
                [seg, dict(seg, git_commit=5)], "x"):
        with pytest.raises(ValueError, match="bad value for key segments"):
            validate_record(dict(rec, segments=bad))


def test_io_helpers(tmp_path):
    atomic_torch_save({"a": 1}, tmp_path / "sub/x.pt")
    assert (tmp_path / "sub/x.pt").stat().st_size > 0
    assert check_writable_dir(tmp_path / "new/deeper") == tmp_path / "new/deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot write to the output folder .*file/sub.*is not a folder"):
        check_writable_dir(blocker / "sub")


def test_other_settings_get_their_own_file(tmp_path):
    paper = make_record()
    official = make_record()
    official["config"] = make_config("cifar10-jpeg", "kps_ga", epochs=2, ga_variant="official").to_dict()
    a, b = write_record(paper, tmp_path), write_record(official, tmp_path)
    assert (a.name, b.name) == ("seed0.epochs-2.json", "seed0.ga_variant-official.epochs-2.json")
    assert record_path(tmp_path, "cifar10", "ce", 100, 1, "m_max-0.2").name == "seed1.m_max-0.2.json"
    assert len(load_records(tmp_path)) == 2


def test_a_record_that_predates_width_and_image_size_loads_with_the_papers(tmp_path):
    rec = make_record()
    for key in ("width", "image_size"):
        del rec["config"][key]
    path = tmp_path / "cifar10-jpeg/kps_ga/imb100/seed0.epochs-2.json"
    atomic_write_text(path, json.dumps(rec))
    loaded = load_record(path)
    assert (loaded["config"]["width"], loaded["config"]["image_size"]) == (16, 32)
    rec["config"]["preset"] = "cifar10_lt_tiny"
    atomic_write_text(path, json.dumps(rec))
    with pytest.raises(ValueError, match=r"seed0.epochs-2.json: bad config: unknown preset 'cifar10_lt_tiny'"):
        load_record(path)


DAMAGE = {  # how a record file gets damaged -> what the readers must say about it
    "truncated": (lambda path: path.write_text(path.read_text()[:200]), "not valid JSON (Expecting "),
    "garbage": (lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 20), "not a text file (invalid"),
    "empty": (lambda path: path.write_text(""), "empty file"),
    "folder": (lambda path: (path.unlink(), path.mkdir()), "cannot be read (Is a directory)"),
    "schema": (lambda path: path.write_text(json.dumps(dict(json.loads(path.read_text()), top1_error="60"))),
               "bad value for key(s) top1_error"),
    "wrong kind": (lambda path: path.write_text(json.dumps(dict(json.loads(path.read_text()), config=dict(
        json.loads(path.read_text())["config"], dataset=["cifar10-jpeg"])))), "bad config: "),
}


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request, tmp_path):
    """A results folder of two records, one of them damaged; (folder, its path, the message expected)."""
    write_record(make_record("ce"), tmp_path / "results")
    path = write_record(make_record("kps_ga"), tmp_path / "results")
    damage, message = DAMAGE[request.param]
    damage(path)
    return tmp_path / "results", path, message


def test_every_reader_names_a_damaged_record_and_what_is_wrong(damaged, capsys):
    from kps import results
    from kps.report import per_class_page, table_page

    out, path, message = damaged
    expected = f"{path}: {message}"
    for read in (lambda: load_record(path), lambda: load_records(out), lambda: table_page(3, out),
                 lambda: per_class_page(out)):
        with pytest.raises(ValueError) as err:
            read()
        assert str(err.value).startswith(expected), str(err.value)
        assert str(err.value).endswith("; restore it from git, or train its run again with --force")
        assert "\n" not in str(err.value)
    # python -m kps.results (the first step of `make site`): one line, exit 2
    assert results.main([str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: {expected}") and captured.err.count("\n") == 1


def test_the_record_check_reads_every_record_and_nested_roots(tmp_path, capsys):
    from kps import results

    write_record(make_record("ce"), tmp_path / "results")
    nested = write_record(make_record("kps_ga"), tmp_path / "results" / "bf16-check" / "bf16")
    assert results.main([str(tmp_path / "results")]) == 0
    assert capsys.readouterr().out == f"2 records under {tmp_path / 'results'}: all readable\n"
    nested.write_text("{")
    assert results.main([str(tmp_path / "results")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {nested}: not valid JSON")
