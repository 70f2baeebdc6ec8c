"""`migrate shim` on CPU: small CUDA programs, one per family of calls, run under the emulator.

Each program marks the lines that must be logged with `# expect: <tag> <api>`; the test checks
that the program finishes, prints the same numbers as its CPU-native twin (the same text with the
CUDA idioms edited out), and that the log, read with the project's parser, holds exactly the
marked records: no more, no fewer (`# expect+1:` marks the next line, for long ones).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clirun import migrate

from migrate.audit.parse import parse
from migrate.shim.runner import shim_env

EXPECT = re.compile(r"#\s*expect(\+1)?:\s*(\S+)\s+(\S+)")


def write_program(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def expected_records(path: Path) -> set[tuple[str, int, str, str]]:
    found = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for next_line, tag, api in EXPECT.findall(line):
            found.add((str(path), number + bool(next_line), tag, api))
    return found


def start_python(script: Path, env: dict[str, str] | None, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_python(
    script: Path, env: dict[str, str] | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return finish(start_python(script, env, cwd))


def run_shimmed(
    tmp_path: Path,
    text: str,
    native_edits: list[tuple[str, str]] | None,
    level: int = 2,
    target: str = "cpu",
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """Run the program under the shim and its native twin (when edits are given) side by side;
    return (shim run, program, log dir)."""
    program = write_program(tmp_path, "program.py", text)
    logs = tmp_path / "logs"
    native = None
    if native_edits is not None:
        native_text = program.read_text()
        for old, new in native_edits:
            assert old in native_text, old
            native_text = native_text.replace(old, new)
        native = start_python(write_program(tmp_path, "native.py", native_text), None, tmp_path)
    shimmed = run_python(program, shim_env(target, logs, level=level), tmp_path)
    assert shimmed.returncode == 0, shimmed.stderr
    if native is not None:
        plain = finish(native)
        assert plain.returncode == 0, plain.stderr
        assert shimmed.stdout == plain.stdout
    return shimmed, program, logs


def logged(logs: Path) -> set[tuple[str, int, str, str]]:
    result = parse([str(logs)])
    assert result.malformed == []
    return {(r.path, r.line, r.tag, r.api) for r in result.records}


def test_tensor_and_module_moves(tmp_path: Path) -> None:
    shimmed, program, logs = run_shimmed(
        tmp_path,
        """
        import torch
        torch.manual_seed(0)
        m = torch.nn.Linear(3, 2).cuda()  # expect: cpu_match torch.Tensor.cuda
        m2 = torch.nn.Linear(3, 2).to("cuda")  # expect: cpu_match torch.Tensor.to
        x = torch.randn(4, 3)
        a = x.to("cuda")  # expect: cpu_match torch.Tensor.to
        b = x.to(device=torch.device("cuda", 0))  # expect: cpu_match torch.Tensor.to
        c = x.to(0, torch.float64)  # expect: cpu_match torch.Tensor.to
        d = x.cuda()  # expect: cpu_match torch.Tensor.cuda
        e = x.to(torch.float64)
        f = x.new_zeros(2, device="cuda")  # expect: cpu_match torch.Tensor.new_zeros
        print(m(a).sum().item(), m2(b).sum().item(), c.sum().item(), d.device, e.dtype, f.tolist())
        """,
        [
            ('.to("cuda")', ""),
            ('torch.device("cuda", 0)', '"cpu"'),
            ("x.to(0,", 'x.to("cpu",'),
            (".cuda()", ""),
            ('device="cuda"', 'device="cpu"'),
        ],  # fmt: skip
    )
    assert logged(logs) == expected_records(program)
    assert "cpu" in shimmed.stdout


def test_factories_generator_and_pin_memory(tmp_path: Path) -> None:
    _, program, logs = run_shimmed(
        tmp_path,
        """
        import torch
        torch.manual_seed(0)
        g = torch.Generator(device="cuda")  # expect: cpu_match torch.Generator
        g.manual_seed(3)
        values = [
            torch.randn(2, 2, device="cuda", generator=g),  # expect: cpu_match torch.randn
            torch.zeros(3, device="cuda"),  # expect: cpu_match torch.zeros
            torch.ones(3, device=torch.device("cuda")),  # expect: cpu_match torch.ones
            torch.empty(0, device="cuda:0"),  # expect: cpu_match torch.empty
            torch.full((2,), 7.0, device="cuda"),  # expect: cpu_match torch.full
            torch.arange(5, device="cuda"),  # expect: cpu_match torch.arange
            torch.tensor([1.0, 2.0], device="cuda"),  # expect: cpu_match torch.tensor
            torch.zeros_like(torch.ones(2), device="cuda"),  # expect: cpu_match torch.zeros_like
            torch.linspace(0, 1, 4, device="cuda"),  # expect: cpu_match torch.linspace
            torch.ones(2, pin_memory=True),  # expect: cpu_modified torch.ones
            torch.ones(2).pin_memory(),  # expect: cpu_match torch.Tensor.pin_memory
            torch.rand(2, device="cpu"),
        ]
        print(isinstance(g, torch.Generator), [v.tolist() for v in values])
        """,
        [
            ('device="cuda:0"', 'device="cpu"'),
            ('device="cuda"', 'device="cpu"'),
            ('torch.device("cuda")', '"cpu"'),
            (", pin_memory=True", ""),
            (".pin_memory()", ""),
        ],  # fmt: skip
    )
    assert logged(logs) == expected_records(program)


def test_load_and_default_device(tmp_path: Path) -> None:
    _, program, logs = run_shimmed(
        tmp_path,
        """
        import torch
        ck = __file__ + ".pt"  # the native twin runs beside us
        torch.save({"w": torch.arange(3.0)}, ck)
        a = torch.load(ck, map_location="cuda")  # expect: cpu_match torch.load
        b = torch.load(ck, map_location=torch.device("cuda:0"))  # expect: cpu_match torch.load
        c = torch.load(ck, map_location={"cpu": "cuda:0"})  # expect: cpu_match torch.load
        d = torch.load(ck, map_location=lambda s, loc: s.cuda())  # expect: cpu_match torch.load
        e = torch.load(ck, map_location="cpu")
        f = torch.load(ck)
        torch.set_default_device("cuda")  # expect: cpu_match torch.set_default_device
        z = torch.zeros(2)
        torch.set_default_device(None)
        print([t["w"].tolist() for t in (a, b, c, d, e, f)], z.device)
        """,
        [
            ('map_location="cuda"', 'map_location="cpu"'),
            ('torch.device("cuda:0")', '"cpu"'),
            ('{"cpu": "cuda:0"}', '"cpu"'),
            ("lambda s, loc: s.cuda()", '"cpu"'),
            ('set_default_device("cuda")', 'set_default_device("cpu")'),
        ],  # fmt: skip
    )
    assert logged(logs) == expected_records(program)


def test_torch_cuda_functions(tmp_path: Path) -> None:
    shimmed, program, logs = run_shimmed(
        tmp_path,
        """
        import torch
        torch.manual_seed(1)
        ok = torch.cuda.is_available()  # expect: cpu_match torch.cuda.is_available
        n = torch.cuda.device_count()  # expect: cpu_modified torch.cuda.device_count
        torch.cuda.set_device(0)  # expect: cpu_match torch.cuda.set_device
        i = torch.cuda.current_device()  # expect: cpu_modified torch.cuda.current_device
        torch.cuda.manual_seed(5)  # expect: cpu_match torch.cuda.manual_seed
        torch.cuda.manual_seed_all(5)  # expect: cpu_match torch.cuda.manual_seed_all
        state = torch.cuda.get_rng_state()  # expect: cpu_match torch.cuda.get_rng_state
        first = torch.rand(3)
        torch.cuda.set_rng_state(state)  # expect: cpu_match torch.cuda.set_rng_state
        again = torch.rand(3)
        torch.cuda.synchronize()  # expect: cpu_match torch.cuda.synchronize
        used = torch.cuda.memory_allocated()  # expect: cpu_match torch.cuda.memory_allocated
        # expect+1: cpu_match torch.cuda.max_memory_allocated
        peak = torch.cuda.max_memory_allocated()
        # expect+1: cpu_match torch.cuda.reset_peak_memory_stats
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.empty_cache()  # expect: cpu_mismatch torch.cuda.empty_cache
        name = torch.cuda.get_device_name(0)  # answered, not logged (as GPU Migration)
        # expect+1: cpu_modified torch.cuda.get_device_capability
        capability = torch.cuda.get_device_capability()
        # expect+1: cpu_modified torch.cuda.get_device_properties
        props = torch.cuda.get_device_properties(0)
        torch.cuda.ipc_collect()  # expect: cpu_modified torch.cuda.ipc_collect
        # expect+1: cpu_mismatch torch.cuda.reset_max_memory_cached
        torch.cuda.reset_max_memory_cached()
        # expect+1: cpu_functional_mismatch torch.cuda.Event
        start = torch.cuda.Event(enable_timing=True)
        # expect+1: cpu_functional_mismatch torch.cuda.Event
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        s = torch.cuda.Stream()  # expect: cpu_match torch.cuda.Stream
        with torch.cuda.nvtx.range("work"):
            t = torch.cuda.FloatTensor([1, 2])  # expect: cpu_modified torch.cuda.__new__
        end.record()
        elapsed = start.elapsed_time(end)
        s.synchronize()
        graph = torch.cuda.CUDAGraph()  # expect: cpu_modified torch.cuda.CUDAGraph
        with torch.cuda.graph(graph):  # expect: cpu_modified torch.cuda.graph
            doubled = t * 2
        t.fill_(5.0)
        graph.replay()  # a CUDA graph is an HPU graph under GPU Migration: replayed
        assert doubled.tolist() == [10.0, 10.0], doubled
        print(ok, n, i, first.tolist() == again.tolist(), first.tolist(), used, peak, name,
              elapsed >= 0, t.dtype, t.tolist(), capability, props.name)
        """,
        None,
    )
    # GPU Migration logs an nvtx range where contextlib enters it, and so does the emulator
    enter_lines, first = inspect.getsourcelines(contextlib._GeneratorContextManager.__enter__)
    enter = first + next(i for i, t in enumerate(enter_lines) if "next(self.gen)" in t)
    nvtx = (contextlib.__file__, enter, "cpu_mismatch", "torch.cuda.nvtx.range")
    assert logged(logs) == expected_records(program) | {nvtx}
    import torch

    torch.manual_seed(5)  # what the CUDA seed means on the CPU: the CPU generator's seed
    native = torch.rand(3).tolist()
    expected = f"True 1 0 True {native} 0 0 cpu True torch.float32 [5.0, 5.0] (0, 0) cpu\n"
    assert shimmed.stdout == expected


def test_autocast_runs_in_fp32(tmp_path: Path) -> None:
    shimmed, program, logs = run_shimmed(
        tmp_path,
        """
        import torch
        torch.manual_seed(0)
        m, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
        with torch.autocast("cuda"):  # expect: cpu_match torch.autocast.__init__
            a = m(x)
        # expect+1: cpu_match torch.autocast.__init__
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            b = m(x)
        with torch.cuda.amp.autocast():  # expect: cpu_match torch.autocast.__init__
            c = m(x)
        with torch.autocast("cpu", enabled=False):
            d = m(x)
        print(a.dtype, b.dtype, c.dtype, a.tolist(), b.tolist(), c.tolist(), d.tolist())
        """,
        [
            ('torch.autocast("cuda")', 'torch.autocast("cpu", enabled=False)'),
            (
                'torch.autocast(device_type="cuda", dtype=torch.float16)',
                'torch.autocast("cpu", enabled=False)',
            ),
            ("torch.cuda.amp.autocast()", 'torch.autocast("cpu", enabled=False)'),
        ],  # fmt: skip
    )
    assert logged(logs) == expected_records(program)
    assert shimmed.stdout.startswith("torch.float32 torch.float32 torch.float32")


WORKERS = """
import subprocess, sys, threading
import torch
from torch.utils.data import DataLoader, Dataset

class Data(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.full((2,), float(i), device="cuda")  # expect: cpu_match torch.full

def from_thread(out):
    out.append(torch.ones(3).cuda().sum().item())  # expect: cpu_match torch.Tensor.cuda

if __name__ == "__main__":
    out = []
    thread = threading.Thread(target=from_thread, args=(out,))
    thread.start()
    thread.join()
    fork = DataLoader(Data(), batch_size=2, num_workers=1)
    spawn = DataLoader(Data(), batch_size=2, num_workers=1, multiprocessing_context="spawn")
    batches = [b.tolist() for b in fork] + [b.tolist() for b in spawn]
    child = subprocess.run([sys.executable, "child.py"], capture_output=True, text=True, check=True)
    print(out, batches, child.stdout.strip())
"""
CHILD = """
import torch
print(torch.arange(3, device="cuda").sum().item())  # expect: cpu_match torch.arange
"""


def test_threads_workers_and_subprocesses_inherit(tmp_path: Path) -> None:
    write_program(tmp_path, "child.py", CHILD)
    write_program(tmp_path, "native_child.py", CHILD.replace('device="cuda"', 'device="cpu"'))
    _, program, logs = run_shimmed(
        tmp_path,
        WORKERS,
        [('device="cuda"', 'device="cpu"'), (".cuda()", ""), ('"child.py"', '"native_child.py"')],
    )
    records = parse([str(logs)]).records
    assert {(r.path, r.line, r.tag, r.api) for r in records} == (
        expected_records(program) | expected_records(tmp_path / "child.py")
    )
    # one file per process: main, two data-loader workers (fork, spawn), the spawn helper's
    # processes may add empty ones; the worker records come from other processes than main's
    by_file = {(Path(r.source).name, r.api) for r in records}
    main_files = {f for f, api in by_file if api == "torch.Tensor.cuda"}
    worker_files = {f for f, api in by_file if api == "torch.full"}
    assert len(worker_files) == 2 and not worker_files & main_files


LIGHTNING = """
import torch
import pytorch_lightning as pl

class Model(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

m = Model()
m.cuda()  # expect: cpu_match torch.Tensor.cuda
m = m.to("cuda")  # expect: cpu_match torch.Tensor.to
x = torch.ones(2).to(m.device)  # expect: cpu_match torch.Tensor.to
print(m.device, m.layer.weight.device, x.device)
"""


def test_lightning_module_keeps_believing_it_is_on_cuda(tmp_path: Path) -> None:
    """Lightning's mixin records the CUDA device (`m.device` is cuda:0, as under GPU Migration,
    so the program's later `.to(m.device)` is logged too) while the weights live on the CPU.
    Its `.cuda()` asks torch.cuda.current_device() on lightning's own line, as on Gaudi."""
    pytest.importorskip("pytorch_lightning", reason="pytorch_lightning is not installed")
    mixin = pytest.importorskip("lightning_fabric.utilities.device_dtype_mixin")
    shimmed, program, logs = run_shimmed(tmp_path, LIGHTNING, None)
    source = Path(mixin.__file__)
    asks = {  # in .cuda() without an index, and in the `device` property for "cuda"
        (str(source), number, "cpu_modified", "torch.cuda.current_device")
        for number, text in enumerate(source.read_text().splitlines(), start=1)
        if "torch.cuda.current_device()" in text and not text.strip().startswith("#")
    }
    assert len(asks) == 2
    assert logged(logs) == expected_records(program) | asks
    assert shimmed.stdout.split() == ["cuda:0", "cpu", "cpu"]


def test_target_cuda_logs_without_redirecting(tmp_path: Path) -> None:
    shimmed, program, logs = run_shimmed(
        tmp_path,
        """
        import torch
        # expect+1: cuda_match torch.cuda.is_available
        print(torch.cuda.is_available() == torch.cuda.is_available())
        torch.cuda.manual_seed_all(0)  # expect: cuda_match torch.cuda.manual_seed_all
        """,
        None,
        target="cuda",
    )
    assert logged(logs) == expected_records(program)
    for record in parse([str(logs)]).records:
        assert record.replacement == f"{record.api}({record.args})"


def test_level_1_echoes_to_stderr_and_level_2_does_not(tmp_path: Path) -> None:
    text = "import torch\nx = torch.zeros(1, device='cuda')\n"
    program = write_program(tmp_path, "program.py", text)
    runs = [
        start_python(program, shim_env("cpu", tmp_path / f"logs{level}", level=level), tmp_path)
        for level in (1, 2)
    ]
    loud, quiet = (finish(run) for run in runs)
    assert "[cpu_match]: torch.zeros(args=(1,), kwargs={'device': 'hpu'}, )" in loud.stderr
    assert "[cpu_match]" not in quiet.stderr


def test_program_without_cuda_leaves_an_empty_log(tmp_path: Path) -> None:
    _, _, logs = run_shimmed(
        tmp_path,
        """
        import torch
        torch.manual_seed(0)
        print(torch.randn(3).sum().item(), torch.zeros(2).to("cpu").tolist())
        """,
        [],
    )
    files = list(logs.glob("gpu_migration_*.log"))
    assert len(files) == 1 and files[0].read_text() == ""


def test_log_is_valid_after_the_program_is_killed(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        "killed.py",
        """
        import os, signal, torch
        x = torch.ones(2, device="cuda")
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    logs = tmp_path / "logs"
    result = run_python(program, shim_env("cpu", logs, level=2), tmp_path)
    assert result.returncode == -9
    records = parse([str(logs)])
    assert records.malformed == [] and [(r.line, r.api) for r in records.records] == [
        (2, "torch.ones")
    ]


def test_log_format_is_habanas(tmp_path: Path) -> None:
    _, program, logs = run_shimmed(
        tmp_path,
        """
        import torch
        def f():
            return torch.zeros(1).cuda()
        for _ in range(3):
            f()
        """,
        None,
    )
    (log,) = logs.glob("gpu_migration_*.log")
    assert log.name == f"gpu_migration_{int(log.stem.split('_')[-1])}.log"
    lines = log.read_text().split("\n")
    assert re.fullmatch(
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] " + re.escape(str(program)) + ":3", lines[0]
    )
    assert lines[1] == "    [context]:     return torch.zeros(1).cuda()"
    assert lines[2] == (
        "    [cpu_match]: torch.Tensor.cuda(device=None, non_blocking=False, ) --> "
        "torch.Tensor.to(device=cpu, non_blocking=False)"
    )
    assert lines[3:] == ["", ""]  # one record (deduplicated), a blank line, end of file


def test_chains_an_existing_sitecustomize_and_boot_modules(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = 'yes'\n")
    (other / "bootmod.py").write_text("import os\nos.environ['BOOTED'] = 'yes'\n")
    program = write_program(
        tmp_path,
        "p.py",
        """
        import os, torch
        x = torch.zeros(1, device="cuda")
        print(os.environ.get("CHAINED"), os.environ.get("BOOTED"), x.device)
        """,
    )
    base = {**os.environ, "PYTHONPATH": str(other)}
    env = shim_env("cpu", tmp_path / "logs", level=2, boot_modules=["bootmod"], base=base)
    result = run_python(program, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["yes", "yes", "cpu"]
    # boot only (target None): no emulator, boot modules still imported
    plain = run_python(
        write_program(
            tmp_path,
            "q.py",
            "import os, sys\nprint(os.environ.get('BOOTED'), 'torch' in sys.modules)\n",
        ),
        shim_env(None, tmp_path / "nologs", boot_modules=["bootmod"], base=base),
        tmp_path,
    )
    assert plain.stdout.split() == ["yes", "False"] and not (tmp_path / "nologs").exists()
    broken = run_python(
        program, shim_env("cpu", tmp_path / "l", boot_modules=["nope_x"], base=base), tmp_path
    )
    assert broken.returncode == 2
    assert broken.stderr.strip().splitlines() == [
        "migrate shim: cannot import boot module 'nope_x': No module named 'nope_x'"
    ]


def test_cli_passes_exit_code_and_output_through(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        "exit3.py",
        """
        import sys, torch
        print("out", torch.zeros(1, device="cuda").device)
        print("err", file=sys.stderr)
        sys.exit(3)
        """,
    )
    logs = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "shim", "--log-dir", str(logs), "--log-level", "2",
         "--", sys.executable, str(program)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stdout == "out cpu\n"
    assert result.stderr.splitlines() == [
        "err",
        f"migrate shim: 1 records in 1 log file under {logs}",
    ]
    quiet = subprocess.run(
        [sys.executable, "-m", "migrate", "shim", "-q", "--log-dir", str(logs), "--",
         sys.executable, "-c", "import sys; sys.exit(5)"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (5, "", "")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["python", "-I", "prog.py"], "-I"),
        (["python3", "-S", "prog.py"], "-S"),
        (["/usr/bin/python3.11", "-u", "-Es", "prog.py"], "-E"),
        (["python", "-bI", "-c", "pass"], "-I"),
    ],
)
def test_an_interpreter_that_cannot_boot_the_emulator_is_refused(
    argv: list[str], flag: str
) -> None:
    """-E/-I ignore PYTHONPATH and -S skips site: the emulator would never start, and the run
    would end saying the program never imported torch. Refused up front, with the reason."""
    from migrate.errors import BadInput
    from migrate.shim.runner import refuse_isolated_python

    with pytest.raises(BadInput, match=f"{flag}: the interpreter .* cannot start"):
        refuse_isolated_python(argv)


@pytest.mark.parametrize(
    "argv",
    [["python", "-s", "-u", "prog.py"], ["python", "-c", "import x", "-I"], ["prog", "-I"]],
)
def test_interpreter_options_that_keep_the_boot_are_accepted(argv: list[str]) -> None:
    from migrate.shim.runner import refuse_isolated_python

    refuse_isolated_python(argv)  # -s, options after -c's code, not a python: fine


def test_shim_cli_refuses_python_dash_i_in_one_line(tmp_path: Path) -> None:
    done = migrate("shim", "--log-dir", str(tmp_path), "--", sys.executable, "-I", "x.py")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "-I" in done.stderr
