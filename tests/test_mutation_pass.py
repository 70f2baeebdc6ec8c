"""Issue 26's own mutation pass: a test for each planted bug that the suite did not catch.

Each test says which mutant it kills. Same small workspaces as tests/test_behaviours.py.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import git
from test_behaviours import STAGE_A, STAGE_B, TEXT, _edit, _Killed, _metrics, _record, _workspace

from migrate import compare, patchfile, pipeline, stack, stats, workspace
from migrate.audit import diff as logdiff
from migrate.audit import report as logreport
from migrate.audit.parse import origin, split_call
from migrate.errors import ConflictError, PatchError, RecipeError
from migrate.recipe import parse_checkpoint, parse_smoke
from migrate.smoke.device import Device
from migrate.smoke.metrics import PatchInfo

# ---------------------------------------------------------------- stack


def test_a_stage_counts_as_applied_only_when_every_stage_before_it_is(
    tmp_path: Path, make_repo
) -> None:
    """Mutant: the walk skips a stage whose tag is gone and goes on counting later ones."""
    recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"a": STAGE_A, "b": STAGE_B})
    stack.apply(recipe, ws)
    git(ws, "tag", "-d", "stage/a")
    state = stack.state(recipe, ws)
    assert state.applied == [] and state.extra_commits == 2


def test_repair_after_a_kill_removes_the_index_lock_the_dead_git_left(
    tmp_path: Path, make_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant: _repair no longer deletes .git/index.lock (every git write then fails)."""
    recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"a": STAGE_A})

    def killed_git_apply(ws: Path, *args: object, **kwargs: object) -> None:
        (ws / "a.txt").write_text("ONE\n")
        (ws / ".git" / "index.lock").write_text("")  # git apply died holding the index
        raise _Killed

    with monkeypatch.context() as m:
        m.setattr(stack, "_git_apply", killed_git_apply)
        m.setattr(stack, "_repair", lambda *a, **k: None)
        with pytest.raises(_Killed):
            stack.apply(recipe, ws)
    (applied,) = stack.apply(recipe, ws)
    assert applied.name == "a" and not (ws / ".git" / "index.lock").exists()
    assert git(ws, "status", "--porcelain") == ""


def test_a_refused_new_file_leaves_the_users_untracked_file_alone(
    tmp_path: Path, make_repo
) -> None:
    """Mutant: the journal lists files the stage creates even when they already exist."""
    patch = "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+stage = 1\n"
    recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"s": patch})
    (ws / "new.py").write_text("mine = 1\n")
    with pytest.raises(ConflictError, match="nothing was changed"):
        stack.apply(recipe, ws)
    assert (ws / "new.py").read_text() == "mine = 1\n"


def test_stage_commits_carry_the_pinned_commits_dates(
    tmp_path: Path, make_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant: the committer date is left to the clock (the stage id then depends on when)."""
    with monkeypatch.context() as m:  # an upstream commit made long ago
        m.setenv("GIT_AUTHOR_DATE", "2021-02-03T04:05:06+00:00")
        m.setenv("GIT_COMMITTER_DATE", "2021-02-03T04:05:06+00:00")
        recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"a": STAGE_A})
    stack.apply(recipe, ws)
    pinned = git(ws, "show", "-s", "--format=%aI %cI", recipe.commit)
    assert git(ws, "show", "-s", "--format=%aI %cI", "stage/a") == pinned


# ---------------------------------------------------------------- patchfile, workspace, git


def test_a_backslash_path_that_climbs_out_is_refused(tmp_path: Path) -> None:
    """Mutant: '..' checked only on the POSIX reading of the path, not the backslash one."""
    path = tmp_path / "p.patch"
    path.write_text(_edit("x\\..\\..\\evil.py", "a", "b"))
    with pytest.raises(PatchError, match=r"escapes the repository \('\.\.'\)"):
        patchfile.parse(path)


def test_saved_edits_keep_a_symlink_as_a_symlink(tmp_path: Path, make_repo) -> None:
    """Mutant: save_edits copies the file a symlink points to instead of the link."""
    recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"a": STAGE_A}, {"link": "a.txt"})
    (ws / "link").unlink()
    os.symlink("b.txt", ws / "link")  # the user retargeted it
    saved = workspace.save_edits(ws, ["link"], "apply") / "files" / "link"
    assert saved.is_symlink() and os.readlink(saved) == "b.txt"


def test_saved_edits_hold_staged_changes(tmp_path: Path, make_repo) -> None:
    """Mutant: changes.patch is `git diff` without HEAD (staged edits left out)."""
    recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"a": STAGE_A})
    (ws / "a.txt").write_text("staged\n")
    git(ws, "add", "a.txt")
    folder = workspace.save_edits(ws, ["a.txt"], "apply")
    assert "+staged" in (folder / "changes.patch").read_text()


def test_a_broken_global_git_config_does_not_reach_the_workspace(
    tmp_path: Path, make_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant: git runs with the user's global config (GIT_CONFIG_GLOBAL not isolated)."""
    recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"a": STAGE_A})
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".gitconfig").write_text("[diff]\n\tnoprefix = true\n[broken\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    (applied,) = stack.apply(recipe, ws)
    assert applied.name == "a"


# ---------------------------------------------------------------- recipe


def test_a_recipe_path_with_backslashes_is_refused() -> None:
    """Mutant: relative_path accepts a backslash (a separator on Windows checkouts)."""
    with pytest.raises(RecipeError, match="must be a relative path inside the workspace"):
        parse_checkpoint({"url": "https://example.invalid/m", "path": "..\\m.ckpt"}, "r.toml")


# ---------------------------------------------------------------- audit


def test_a_stray_closing_bracket_does_not_hide_the_call_end() -> None:
    """Mutant: bracket depth may go negative, so a later bracketed ' --> ' is split at."""
    assert split_call("f(a)) (b --> c) --> d") == ("f(a)) (b --> c)", "d")


def test_torchgen_is_torch() -> None:
    """Mutant: only `torch/` under site-packages is torch."""
    assert origin("/usr/lib/python3.10/site-packages/torchgen/gen.py") == "torch"
    assert origin("/usr/lib/python3.10/site-packages/numpy/core.py") == "third_party"


def test_mismatches_and_free_text_are_counted_and_their_sites_listed_once(
    tmp_path: Path,
) -> None:
    """Mutants: a mismatch's count is its last tally's, not the sum; free-text sites repeat."""
    call = "torch.cuda.nvtx.range_push(msg=x, )"
    mismatch = _record("t.py:5", "push()", call, "hpu_mismatch").replace(
        "torch.Tensor.to(device=hpu)", "Dummy"
    )
    free = _record("t.py:9", "init()", "torch.distributed.init_process_group(nccl, )").replace(
        "torch.Tensor.to(device=hpu)", "change backend to hccl"
    )
    (tmp_path / "a.log").write_text(mismatch * 2 + free)
    (tmp_path / "b.log").write_text(mismatch + free)
    report = logreport.build([tmp_path / "a.log", tmp_path / "b.log"])
    (mis,) = report.mismatches.values()
    assert mis.count == 3
    (text,) = report.free_text.values()
    assert text.count == 2 and text.sites == ["t.py:9"]


def test_moved_sites_pair_in_order(tmp_path: Path) -> None:
    """Mutant: the first removed site pairs with the last added one of the same text."""
    call = "torch.Tensor.cuda(device=None, )"
    (tmp_path / "a.log").write_text(
        _record("t.py:10", "x.cuda()", call) + _record("t.py:20", "x.cuda()", call)
    )
    (tmp_path / "b.log").write_text(
        _record("t.py:12", "x.cuda()", call) + _record("t.py:22", "x.cuda()", call)
    )
    data = logdiff.diff([tmp_path / "a.log"], [tmp_path / "b.log"]).to_json()
    moved = [(s["line_before"], s["line_after"]) for s in data["call_sites"]]
    assert moved == [(10, 12), (20, 22)]


# ---------------------------------------------------------------- stats, compare


def test_an_interval_that_ends_at_one_is_same() -> None:
    """Mutant: `same` only when 1 is strictly inside the interval."""
    assert stats.verdict(1.5, 1.0, 2.0) == "same"
    assert stats.verdict(0.7, 0.5, 1.0) == "same"


def test_rounds_with_a_zero_latency_are_left_out() -> None:
    """Mutant: rounds are paired without checking every latency is positive."""
    r = stats.paired_ratio([[0.0], [0.2], [0.2]], [[0.1], [0.1], [0.1]])
    assert r is not None and r.rounds == 2


def test_the_bootstrap_interval_is_95_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: the tails are 5% each (a 90% interval)."""
    asked: list[float] = []
    real = stats.quantile

    def quantile(values, q):  # noqa: ANN001, ANN202
        asked.append(q)
        return real(values, q)

    monkeypatch.setattr(stats, "quantile", quantile)
    stats.paired_ratio([[0.2, 0.21]], [[0.1, 0.11]], resamples=20)
    assert sorted(asked) == [pytest.approx(0.025), pytest.approx(0.975)]


def test_a_failed_rounds_first_batch_is_not_counted(tmp_path: Path) -> None:
    """Mutant: the warm-up summary takes the first batch of failed rounds too."""
    run = tmp_path / "run"
    ok = _metrics("a")
    failed = _metrics("a", status="failed")
    failed.timing.batch_s[:] = [9.0]
    for k, m in ((1, ok), (2, failed)):
        folder = pipeline.round_dir(run, "a", k)
        folder.mkdir(parents=True)
        m.write(folder)
    (run / "run.json").write_text(json.dumps({"order": ["a"]}))
    (stage,) = compare.to_json(compare.load_run(run))["stages"]
    assert stage["first_batch"] == {"median_s": 0.5, "n": 1}


# ---------------------------------------------------------------- pipeline


def test_the_resume_key_holds_the_interpreter() -> None:
    """Mutant: `--python` left out of the resume key."""
    spec = parse_smoke({"script": "s.py"}, "r.toml")
    patch, device = PatchInfo(cumulative_sha256="p"), Device("cpu", "cpu")
    one = pipeline.RunOptions(device="cpu", python="/usr/bin/python3.10")
    two = pipeline.RunOptions(device="cpu", python="/usr/bin/python3.8")
    assert pipeline.result_key(spec, patch, device, one) != pipeline.result_key(
        spec, patch, device, two
    )


def test_rounds_default_to_two_on_the_cpu_only() -> None:
    """Mutant: the CPU's default of two rounds applies to every device."""
    plain = pipeline.RunOptions()
    assert pipeline.repeat_for(plain, Device("cpu", "cpu")) == pipeline.DEFAULT_REPEAT_CPU == 2
    assert pipeline.repeat_for(plain, Device("cuda", None)) == 1
    assert pipeline.repeat_for(plain, Device("hpu", None)) == 1
    assert pipeline.repeat_for(pipeline.RunOptions(repeat=3), Device("hpu", None)) == 3


def test_run_folders_of_one_second_are_numbered_from_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant: the suffix is off by one (`-1`, `-2`: not save_edits' `-2`, `-3`)."""
    fixed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return fixed

    monkeypatch.setattr(pipeline, "datetime", Clock)
    names = [pipeline.new_run_dir(tmp_path).name for _ in range(3)]
    assert names == ["20260102-030405", "20260102-030405-2", "20260102-030405-3"]


# ---------------------------------------------------------------- init


def test_init_marks_an_optimizer_named_opt_capital() -> None:
    """Mutant: `optG`/`optD` (opt + a capital) are not recognised as optimizers."""
    pytest.importorskip("libcst", reason="migrate init needs the init extra (libcst)")
    from migrate.bootstrap.draft import draft_source

    source = "def step(optG, loss):\n    loss.backward()\n    optG.step()\n    return loss\n"
    lines = [ln.strip() for ln in draft_source(source, "gan.py").drafted.splitlines()]
    assert lines[lines.index("optG.step()") + 1].startswith("htcore.mark_step()")


# ---------------------------------------------------------------- a second, smaller pass


def test_revert_force_to_the_top_stage_still_discards_the_saved_edits(
    tmp_path: Path, make_repo
) -> None:
    """Mutant: revert returns early when no stage is removed, even with edits to discard."""
    recipe, ws = _workspace(tmp_path, make_repo, TEXT, {"a": STAGE_A, "b": STAGE_B})
    stack.apply(recipe, ws)
    (ws / "a.txt").write_text("edited\n")
    told: list[str] = []
    assert stack.revert(recipe, ws, "b", force=True, notify=told.append) == []
    assert (ws / "a.txt").read_text() == "ONE\n"
    saved = next(t for t in told if t.startswith("saved your edits to ")).split()[4]
    assert (Path(saved) / "files" / "a.txt").read_text() == "edited\n"


def test_a_checkpoint_digest_must_be_lowercase_hex() -> None:
    """Mutant: upper-case hex digits accepted (the recipe says lowercase)."""
    table = {"url": "https://example.invalid/m", "path": "m.ckpt"}
    with pytest.raises(RecipeError, match="64 lowercase hex digits"):
        parse_checkpoint({**table, "sha256": "A" * 64}, "r.toml")
    assert parse_checkpoint({**table, "sha256": "a" * 64}, "r.toml").sha256 == "a" * 64


def test_resume_lists_a_skipped_stage_once_over_all_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant: a stage reused in rounds 1 and 2 is listed as skipped twice."""
    spec = parse_smoke({"script": "s.py"}, "r.toml")
    device, patch = Device("cpu", "cpu"), PatchInfo(cumulative_sha256="p")
    options = pipeline.RunOptions(device="cpu", repeat=2)
    key = pipeline.result_key(spec, patch, device, options)
    run = tmp_path / "run"
    for k in (1, 2):
        folder = pipeline.round_dir(run, "a", k)
        folder.mkdir(parents=True, exist_ok=True)
        _metrics("a", "ok", key).write(folder)
    monkeypatch.setattr(pipeline, "patch_info", lambda recipe, upto: patch)
    monkeypatch.setattr(compare, "load_run", lambda run_dir: None)
    monkeypatch.setattr(compare, "write", lambda report, fmt, path: path)
    started = pipeline._Started(spec, run, device, options, lambda *a, **k: None)

    class _Stage:
        name = "a"

    result = pipeline._run_rounds(None, tmp_path, started, [_Stage()], True)  # type: ignore[arg-type]
    assert result.skipped == ["a"]
    assert [m.stage for m in result.stages] == ["a"] and [m.stage for m in result.rounds] == ["a"]
