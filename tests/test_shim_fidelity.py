"""Fidelity: the emulator writes what GPU Migration would write, record for record.

A CUDA program exercising each call family is run under the emulator (target cpu, level 1); the
records GPU Migration would write for it are spelled out below in Habana's own form, transcribed
from the conventions of the real logs in shared/reference-logs (BERT, torchvision,
Megatron-DeepSpeed): the API and argument rendering left of ` --> `, the tag's kind, and which
line the record is attributed to. The emulator's tag prefix is `cpu_` where Gaudi's is `hpu_`, and
its right-hand side says what the CPU did (checked where it is a Habana-style free text).
No held-back data, no GPU: the program is written here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from migrate.audit.parse import parse
from migrate.shim.runner import shim_env

PROGRAM = """
import torch
from torch.utils.data import DataLoader, Dataset

torch.manual_seed(42)
assert torch.cuda.is_available()  # R1
torch.cuda.set_device(0)  # R2
torch.cuda.manual_seed(42)  # R3
device = torch.device("cuda", torch.cuda.current_device())  # R4
n = torch.cuda.device_count()  # R5
state = torch.cuda.get_rng_state()  # R6
model = torch.nn.Linear(4, 4).to(device)  # R7
other = torch.nn.Linear(4, 4).cuda()  # R8
x = torch.randn(2, 4)
y = x.to(device)  # R9
z = x.to(device, non_blocking=True)  # R10
if y.device.type != "cuda":  # on Gaudi too: the tensor is on hpu, the program wants cuda
    y = y.to(device)  # R11
flat = torch.empty(8, device="cuda", dtype=torch.bfloat16)  # R12
mask = torch.ones((1, 4, 4), device=torch.cuda.current_device())  # R13 R14
overflow = torch.cuda.IntTensor([0])  # R15
torch.cuda.synchronize()  # R16
used = torch.cuda.max_memory_allocated() / 2**20  # R17
with torch.cuda.nvtx.range("step"):
    pass


class Data(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.full((2,), float(i))


loader = DataLoader(Data(), batch_size=2, pin_memory=True)  # R18
batches = [b.to(device) for b in loader]  # R19
scaler = torch.cuda.amp.GradScaler()  # R20
with torch.cuda.amp.autocast():  # R21
    out = model(y)
print(n, len(batches), scaler.is_enabled(), out.dtype, y.device, flat.device, used)
"""

# (marker, tag, left-hand side, right-hand side or None): Habana's record for each marked line.
EXPECTED = [
    # "[hpu_match]: torch.cuda.is_available() --> torch.hpu.is_available()"
    ("R1", "cpu_match", "torch.cuda.is_available()", None),
    # "[hpu_match]: torch.cuda.set_device(device=0, ) --> torch.hpu.set_device(hpu:0)"
    ("R2", "cpu_match", "torch.cuda.set_device(device=0, )", None),
    # "[hpu_match]: torch.cuda.manual_seed(seed=42, ) --> torch.hpu.random.manual_seed(42)"
    ("R3", "cpu_match", "torch.cuda.manual_seed(seed=42, )", "torch.manual_seed(42)"),
    # "[hpu_modified]: torch.cuda.current_device() --> habana_frameworks...current_device()"
    ("R4", "cpu_modified", "torch.cuda.current_device()", None),
    # "[hpu_modified]: torch.cuda.device_count() --> habana_frameworks...device_count()"
    ("R5", "cpu_modified", "torch.cuda.device_count()", None),
    # "[hpu_match]: torch.cuda.get_rng_state(device=cuda, ) --> ...get_rng_state(hpu)"
    ("R6", "cpu_match", "torch.cuda.get_rng_state(device=cuda, )", None),
    # a module's move is the per-tensor call torch makes, as Gaudi logs it (weight_sharing.py):
    # "torch.Tensor.to(args=(device(type='cuda', index=0), None, False), kwargs={}, )"
    (
        "R7",
        "cpu_match",
        "torch.Tensor.to(args=(device(type='cuda', index=0), None, False), kwargs={}, )",
        "torch.Tensor.to(args=('cpu', None, False), kwargs={})",
    ),
    (
        "R8",
        "cpu_match",
        "torch.Tensor.cuda(device=None, non_blocking=False, )",
        "torch.Tensor.to(device=cpu, non_blocking=False)",
    ),
    # "torch.Tensor.to(args=(device(type='cuda', index=0),), kwargs={}, )"
    ("R9", "cpu_match", "torch.Tensor.to(args=(device(type='cuda', index=0),), kwargs={}, )", None),
    # "torch.Tensor.to(args=(device(type='cuda'),), kwargs={'non_blocking': True}, ) -->
    #  torch.Tensor.to(args=('hpu',), kwargs={non_blocking=True, })"
    (
        "R10",
        "cpu_match",
        "torch.Tensor.to(args=(device(type='cuda', index=0),), kwargs={'non_blocking': True}, )",
        "torch.Tensor.to(args=('cpu',), kwargs={non_blocking=True, })",
    ),
    (
        "R11",
        "cpu_match",
        "torch.Tensor.to(args=(device(type='cuda', index=0),), kwargs={}, )",
        None,
    ),
    # "torch.empty(args=(336232258,), kwargs={'device': 'hpu', 'dtype': torch.bfloat16}, )"
    (
        "R12",
        "cpu_match",
        "torch.empty(args=(8,), kwargs={'device': 'hpu', 'dtype': torch.bfloat16}, )",
        "torch.empty(args=(8,), kwargs={device=cpu, dtype=torch.bfloat16, })",
    ),
    # "torch.ones(args=((1, 2048, 2048),), kwargs={'device': 'hpu:1'}, )", and the
    # current_device() on the same line
    ("R13", "cpu_match", "torch.ones(args=((1, 4, 4),), kwargs={'device': 'hpu:0'}, )", None),
    ("R14", "cpu_modified", "torch.cuda.current_device()", None),
    # "[hpu_modified]: torch.cuda.__new__(args=([0],), kwargs={}, ) -->
    #  torch.IntTensor(args=([0],), kwargs={}).to(hpu)"
    (
        "R15",
        "cpu_modified",
        "torch.cuda.__new__(args=([0],), kwargs={}, )",
        "torch.IntTensor(args=([0],), kwargs={})",
    ),
    # "[hpu_match]: torch.cuda.synchronize() --> torch.hpu.synchronize()"
    ("R16", "cpu_match", "torch.cuda.synchronize()", None),
    # "torch.cuda.max_memory_allocated(device=None, ) --> torch.hpu.max_memory_allocated(...)"
    ("R17", "cpu_match", "torch.cuda.max_memory_allocated(device=None, )", None),
    # "torch.utils.data.DataLoader.__init__(dataset=dataset, batch_size=64, shuffle=None, ...,
    #  pin_memory_device=, ) --> change pin_memory_device to hpu" (newer torch adds parameters
    #  after pin_memory_device: checked as a prefix below)
    (
        "R18",
        "cpu_match",
        "torch.utils.data.DataLoader.__init__(dataset=dataset, batch_size=2, shuffle=None, "
        "sampler=None, batch_sampler=None, num_workers=0, collate_fn=None, pin_memory=True, "
        "drop_last=False, timeout=0, worker_init_fn=None, multiprocessing_context=None, "
        "generator=None, prefetch_factor=None, persistent_workers=False, pin_memory_device=, ",
        "set pin_memory to False",
    ),
    (
        "R19",
        "cpu_match",
        "torch.Tensor.to(args=(device(type='cuda', index=0),), kwargs={}, )",
        None,
    ),
    # "torch.cuda.amp.GradScaler.__init__(init_scale=65536.0, growth_factor=2.0,
    #  backoff_factor=0.5, growth_interval=2000, enabled=True, ) --> set enabled to Flase" (sic)
    (
        "R20",
        "cpu_match",
        "torch.cuda.amp.GradScaler.__init__(init_scale=65536.0, growth_factor=2.0, "
        "backoff_factor=0.5, growth_interval=2000, enabled=True, )",
        "set enabled to False",
    ),
    # "torch.autocast.__init__(device_type=cuda, dtype=torch.float16, enabled=True,
    #  cache_enabled=True, )" for `with torch.cuda.amp.autocast(...)`
    (
        "R21",
        "cpu_match",
        "torch.autocast.__init__(device_type=cuda, dtype=torch.float16, enabled=True, "
        "cache_enabled=True, )",
        None,
    ),
]
PREFIX_ONLY = {"R18"}  # the signature grows with torch versions


def _lines(program: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for number, text in enumerate(program.read_text().splitlines(), start=1):
        for marker in re.findall(r"\bR\d+\b", text.partition("#")[2]):
            found.setdefault(marker, []).append(number)
    return found


def _run(tmp_path: Path, text: str, level: int = 1) -> tuple[Path, list]:
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(text).lstrip())
    logs = tmp_path / "logs"
    env = shim_env("cpu", logs, level=level)
    done = subprocess.run(
        [sys.executable, str(program)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (tmp_path / "stdout.txt").write_text(done.stdout)
    result = parse([str(logs)])
    assert result.malformed == []
    return program, result.records


def _check(program: Path, records: list, expected: list, prefix_only: set[str]) -> None:
    lines = _lines(program)
    mine = [r for r in records if r.path == str(program)]
    got = {(r.line, r.tag, f"{r.api}({r.args})"): r.replacement for r in mine}
    want_keys = set()
    for marker, tag, left, right in expected:
        (line,) = lines[marker]
        if marker in prefix_only:
            hits = [k for k in got if k[0] == line and k[1] == tag and k[2].startswith(left)]
            assert len(hits) == 1, (marker, left, sorted(got))
            key = hits[0]
        else:
            key = (line, tag, left)
            assert key in got, (marker, key, sorted(got))
        if right is not None:
            assert got[key] == right, (marker, got[key])
        want_keys.add(key)
    assert set(got) == want_keys, sorted(set(got) - want_keys)


def test_emulated_records_are_gpu_migrations(tmp_path: Path) -> None:
    program, records = _run(tmp_path, PROGRAM)
    _check(program, records, EXPECTED, PREFIX_ONLY)

    # Calls torch makes for the program, logged at level 1 where torch makes them, as on Gaudi:
    # "torch/random.py:40  torch.cuda.manual_seed_all(seed)
    #  [hpu_match]: torch.cuda.manual_seed_all(seed=42, ) --> torch.hpu.random.manual_seed_all(42)"
    torch_dir = os.path.dirname(torch.__file__)
    random_py = os.path.join(torch_dir, "random.py")
    own = [r for r in records if r.path == random_py]
    assert [(r.tag, f"{r.api}({r.args})", r.context.strip()) for r in own] == [
        ("cpu_match", "torch.cuda.manual_seed_all(seed=42, )", "torch.cuda.manual_seed_all(seed)")
    ]
    # "contextlib.py:113  return next(self.gen)  [hpu_mismatch]: torch.cuda.nvtx.range() --> Dummy"
    nvtx = [r for r in records if r.api == "torch.cuda.nvtx.range"]
    assert [(Path(r.path).name, r.tag, r.args, r.replacement) for r in nvtx] == [
        ("contextlib.py", "cpu_mismatch", "", "Dummy")
    ]
    assert nvtx[0].context.strip() == "return next(self.gen)"
    # "torch/cuda/amp/common.py:6  return not (torch.cuda.is_available() or find_spec(...))
    #  [hpu_match]: torch.cuda.is_available() --> torch.hpu.is_available()": CUDA autocast's check
    common = os.path.join(torch_dir, "cuda", "amp", "common.py")
    amp = [(r.tag, f"{r.api}({r.args})", r.context.strip()) for r in records if r.path == common]
    assert amp == [
        (
            "cpu_match",
            "torch.cuda.is_available()",
            'return not (torch.cuda.is_available() or find_spec("torch_xla"))',
        )
    ]
    # torch's real is_available asks device_count(); GPU Migration replaces is_available whole,
    # so that inner call is never logged on Gaudi, nor here
    assert not [r for r in records if r.api == "torch.cuda.device_count" and r.path != str(program)]
    # nothing else is logged outside the program but torch's own guarded calls
    others = {r.path for r in records} - {str(program), random_py, nvtx[0].path}
    assert all(p.startswith(torch_dir) for p in others), others


def test_level_2_drops_torchs_own_calls(tmp_path: Path) -> None:
    _, records = _run(
        tmp_path, "import torch\ntorch.manual_seed(3)\ntorch.cuda.manual_seed(3)\n", 2
    )
    assert [(r.line, r.api, r.args) for r in records] == [(3, "torch.cuda.manual_seed", "seed=3, ")]


DISTRIBUTED = """
import os, sys
import torch
import torch.distributed as dist

store = sys.argv[0] + ".store"
dist.init_process_group(backend="nccl", init_method="file://" + store, world_size=1, rank=0)  # D1
model = torch.nn.parallel.DistributedDataParallel(  # D2
    torch.nn.Linear(2, 2).cuda(), device_ids=[0], broadcast_buffers=False  # D3
)
print(dist.get_backend(), model(torch.ones(1, 2)).shape)  # D4
dist.destroy_process_group()
"""
# "torch.distributed.init_process_group(backend=nccl, init_method=env://, timeout=0:30:00,
#  world_size=1, rank=0, store=None, group_name=, pg_options=None, ) --> change backend to hccl"
# "torch.nn.parallel.DistributedDataParallel.__init__(module=module, device_ids=[0],
#  output_device=None, dim=0, broadcast_buffers=False, ...) --> change device_ids and
#  output_device to None" (the timeout default and the parameters after these differ by torch
#  version: prefixes)
DISTRIBUTED_EXPECTED = [
    (
        "D1",
        "cpu_match",
        "torch.distributed.init_process_group(backend=nccl, init_method=file://",
        "change backend to gloo",
    ),
    (
        "D2",
        "cpu_match",
        "torch.nn.parallel.DistributedDataParallel.__init__(module=module, device_ids=[0], "
        "output_device=None, dim=0, broadcast_buffers=False, ",
        "change device_ids and output_device to None",
    ),
    (
        "D3",
        "cpu_match",
        "torch.Tensor.cuda(device=None, non_blocking=False, )",
        None,
    ),
    # "[hpu_match]: torch.distributed.get_backend() --> change return value from hccl to nccl"
    ("D4", "cpu_match", "torch.distributed.get_backend()", "change return value from gloo to nccl"),
]


def test_distributed_nccl_and_ddp(tmp_path: Path) -> None:
    if not torch.distributed.is_available():
        pytest.skip("this torch build has no torch.distributed")
    program, records = _run(tmp_path, DISTRIBUTED, level=2)
    assert (tmp_path / "stdout.txt").read_text().startswith("nccl ")
    text = program.read_text().replace("D", "R")  # reuse the marker reader
    (tmp_path / "markers.py").write_text(text)
    expected = [(m.replace("D", "R"), t, left, right) for m, t, left, right in DISTRIBUTED_EXPECTED]
    moved = [r for r in records if r.path == str(program)]
    lines = _lines(tmp_path / "markers.py")
    got = {(r.line, r.tag, f"{r.api}({r.args})", r.replacement) for r in moved}
    assert len(got) == len(expected), sorted(got)
    for marker, tag, left, right in expected:
        (line,) = lines[marker]
        assert any(
            g[0] == line and g[1] == tag and g[2].startswith(left) and right in (None, g[3])
            for g in got
        ), (marker, left, sorted(got))


LIGHTNING = """
import torch
import pytorch_lightning as pl
from pytorch_lightning.utilities.seed import isolate_rng


class Model(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)


pl.seed_everything(7)
with isolate_rng():
    torch.rand(1)
m = Model().cuda()  # L1
x = torch.ones(1, 2).to(m.device)  # L2
print(m.device, x.device)
"""


def test_lightning_seed_utilities_and_device_mixin(tmp_path: Path) -> None:
    """Lightning's seed utilities call torch.manual_seed (-> torch.cuda.manual_seed_all in
    torch/random.py) and, for isolate_rng, torch.cuda.is_available / get_rng_state_all /
    set_rng_state_all on lightning's own lines; its mixin asks torch.cuda.current_device() and
    answers cuda:0, so the program's `.to(m.device)` is logged, as under GPU Migration."""
    pytest.importorskip("pytorch_lightning", reason="pytorch_lightning is not installed")
    seed = pytest.importorskip("lightning_fabric.utilities.seed")
    program, records = _run(tmp_path, LIGHTNING)
    text = program.read_text().replace("# L", "# R")
    (tmp_path / "markers.py").write_text(text)
    lines = _lines(tmp_path / "markers.py")
    mine = {(r.line, r.tag, f"{r.api}({r.args})") for r in records if r.path == str(program)}
    assert mine == {
        (lines["R1"][0], "cpu_match", "torch.Tensor.cuda(device=cuda:0, non_blocking=False, )"),
        (
            lines["R2"][0],
            "cpu_match",
            "torch.Tensor.to(args=(device(type='cuda', index=0),), kwargs={}, )",
        ),
    }
    in_seed = {(r.tag, r.api) for r in records if r.path == seed.__file__}
    assert in_seed == {
        ("cpu_match", "torch.cuda.is_available"),
        ("cpu_match", "torch.cuda.get_rng_state_all"),
        ("cpu_match", "torch.cuda.set_rng_state_all"),
    }
    seeded = [r for r in records if r.path.endswith(os.path.join("torch", "random.py"))]
    assert {f"{r.api}({r.args})" for r in seeded} == {"torch.cuda.manual_seed_all(seed=7, )"}
    mixin = [r for r in records if "device_dtype_mixin" in r.path]
    assert {(r.tag, r.api) for r in mixin} == {("cpu_modified", "torch.cuda.current_device")}
