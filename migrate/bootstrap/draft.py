"""Draft the GPU Migration edits of one entry script by editing its syntax tree with LibCST.

Why LibCST and not a regex or `ast`: a draft is a patch a person reviews and keeps, so it must
change only what it adds; LibCST round-trips the source byte for byte (comments, blank lines,
quotes), finds statements by structure (a `loss.backward()` inside a one-line `if`, an
`optimizer.step(closure)` whose result is assigned), and never mistakes a string or a comment for
code. `ast.unparse` would reformat the whole file. LibCST is an optional dependency (the `init`
extra): this module is imported only by `migrate init` (see `project.load_drafter`).

What is drafted, each edit at most once (running the drafter on its own output changes nothing):
- a guarded import of `habana_frameworks.torch.gpu_migration` (and `core as htcore`) as the
  first statement after the module docstring and `__future__` imports, so before anything can
  import torch; where `habana_frameworks` is absent, `htcore.mark_step()` is a no-op stand-in;
- `htcore.mark_step()` after every statement that calls `<x>.backward(...)` and after every
  optimizer step (`<optimizer>.step(...)`, `scaler.step(<optimizer>)`), in functions and in
  top-level code alike; and after a hand-written parameter update (`p.data.add_(p.grad, ...)`,
  or the `for p in model.parameters():` loop that holds it): that update is the optimizer step;
- `htcore.mark_step()` at the end of each iteration of an inference loop over data (a loader,
  batches, an iterator of tensors, `enumerate(loader)`, a `while` loop drawing with `next()`)
  inside `torch.no_grad()` / `torch.inference_mode()` (a `with` block or a decorated function),
  or opening one. A loop over integers (`for k in topk:`) is no batch boundary. Of nested loops
  over data, the outermost gets it, so the mark runs once per batch, not once per item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from migrate.errors import BadInput

STANDIN = "htcore"
HEADER = '''\
try:  # migrate init: turn GPU Migration on before torch is imported (Gaudi)
    import habana_frameworks.torch.gpu_migration  # noqa: F401
    import habana_frameworks.torch.core as htcore
except ModuleNotFoundError as _no_gaudi:  # no Habana software here: run as before
    if not (_no_gaudi.name or "").startswith("habana_frameworks"):
        raise

    class htcore:  # stands in for habana_frameworks.torch.core
        @staticmethod
        def mark_step():
            """Without Gaudi's lazy mode there is no graph to run."""
'''
GPU_MIGRATION = "habana_frameworks.torch.gpu_migration"
CORE = "habana_frameworks.torch.core"
WHY = {
    "backward": "run the backward graph now",
    "step": "run the optimizer step's graph now",
    "batch": "run this batch's graph now",
    "update": "run the parameter update's graph now",
}
# optimizer, optimizerD, d_optim, opt, opt_g, optG, opts; not option, scheduler
_OPTIMIZER_NAME = re.compile(r"optim|(^|_)opts?($|_|\d)|^opt[A-Z]")
# A loop over data: its iterable names a loader, batches, data, samples or tensors being split.
_BATCHY = re.compile(r"load|batch|data|sample|split|chunk|unbind|tensor", re.IGNORECASE)
_LOADER_CLASS = re.compile(r"(DataLoader|Loader)$")
_NO_GRAD = {"no_grad", "inference_mode"}
_JUMPS = (cst.Continue, cst.Break, cst.Return, cst.Raise)


@dataclass(frozen=True)
class Edit:
    """One drafted insertion: the original line it goes with (1-based) and what it is."""

    line: int
    what: str


@dataclass
class Draft:
    """An entry script before and after drafting."""

    path: str
    source: str
    drafted: str
    edits: list[Edit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.drafted != self.source


def draft_source(source: str, path: str) -> Draft:
    """Draft the edits for one script's `source` (`path` names it in messages and edits).

    The file's byte-order mark is kept, and its line endings and indentation too (LibCST
    writes new lines with the module's own newline and indent), so the patch touches only
    the lines it adds.
    """
    bom = "\ufeff" if source.startswith("\ufeff") else ""
    try:
        module = cst.parse_module(source[len(bom) :])
    except cst.ParserSyntaxError as exc:
        reason = (str(exc.message).strip().splitlines() or ["syntax error"])[0]
        raise BadInput(
            f"--entry {path}: does not parse as Python (line {exc.raw_line}: {reason})"
        ) from None
    wrapper = MetadataWrapper(module)
    facts = _Facts(wrapper.module)
    wrapper.visit(facts)
    finder = _LoopFinder(facts)
    wrapper.visit(finder)
    drafter = _Drafter(facts, finder.inference_loops())
    drafted = wrapper.visit(drafter)
    edits = sorted(drafter.edits, key=lambda e: (e.line, e.what))
    notes: list[str] = []
    if not any(e.what.startswith("mark_step") for e in edits) and not facts.existing_marks:
        notes.append(
            f"{path}: no training step (x.backward(), optimizer.step()) or inference loop "
            "found: call htcore.mark_step() by hand where a step's graph should run"
        )
    return Draft(path, source, bom + drafted.code, edits, notes)


# ------------------------------------------------------------------------------- helpers


def _dotted(node: cst.CSTNode | None) -> str | None:
    """`torch.optim.SGD` -> "torch.optim.SGD"; None for anything but names and attributes."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr.value}" if base is not None else None
    return None


class _Names(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: list[str] = []

    def visit_Name(self, node: cst.Name) -> None:
        self.found.append(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.found.append(node.attr.value)


def _names_in(node: cst.CSTNode) -> list[str]:
    """Every name and attribute name inside an expression."""
    collect = _Names()
    node.visit(collect)
    return collect.found


def _is_no_grad(expr: cst.BaseExpression) -> bool:
    """`torch.no_grad()`, `@torch.inference_mode`, `torch.set_grad_enabled(False)`."""
    target = expr.func if isinstance(expr, cst.Call) else expr
    last = (_dotted(target) or "").rsplit(".", 1)[-1]
    if last in _NO_GRAD:
        return True
    if last == "set_grad_enabled" and isinstance(expr, cst.Call) and expr.args:
        value = expr.args[0].value
        return isinstance(value, cst.Name) and value.value == "False"
    return False


def _small_call(small: cst.CSTNode) -> cst.Call | None:
    """The call a small statement makes at its top: `f(x)`, `y = f(x)`, `y: T = f(x)`."""
    value = None
    if isinstance(small, cst.Expr | cst.Assign | cst.AnnAssign | cst.AugAssign):
        value = small.value
    return value if isinstance(value, cst.Call) else None


def _is_mark_step(small: cst.CSTNode) -> bool:
    call = _small_call(small)
    if call is None or not isinstance(small, cst.Expr):
        return False
    func = call.func
    name = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", None)
    return name == "mark_step"


def _line_is_mark_step(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and any(_is_mark_step(s) for s in stmt.body)


def _is_manual_update(node: cst.CSTNode) -> bool:
    """`param.data.add_(param.grad, alpha=-lr)`: a hand-written SGD step (it is the step)."""
    if not isinstance(node, cst.Call):
        return False
    name = _dotted(node.func) or ""
    return name.endswith((".data.add_", ".data.sub_")) and any(
        "grad" in _names_in(a.value) for a in node.args
    )


class _Updates(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found = False

    def visit_Call(self, node: cst.Call) -> None:
        self.found = self.found or _is_manual_update(node)


def _updates_parameters(node: cst.CSTNode) -> bool:
    """Whether a statement holds a hand-written parameter update."""
    finder = _Updates()
    node.visit(finder)
    return finder.found


def _is_parameter_loop(node: cst.CSTNode) -> bool:
    """`for p in model.parameters(): p.data.add_(...)`: the update of every parameter."""
    return (
        isinstance(node, cst.For)
        and any("param" in n.lower() for n in _names_in(node.iter))
        and _updates_parameters(node.body)
    )


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


def _is_future_import(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and isinstance(stmt.body[0], cst.ImportFrom)
        and _dotted(stmt.body[0].module) == "__future__"
    )


# ------------------------------------------------------------------------------- passes


class _Facts(cst.CSTVisitor):
    """Module-wide facts: Habana imports already there, optimizer names, hand-made updates."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, module: cst.Module) -> None:
        super().__init__()
        self.module = module
        self.has_gpu_migration = False
        self.core_alias: str | None = None
        self.optimizers: set[str] = set()  # source text of what optimizers are bound to
        self.optimizer_classes: set[str] = set()  # names imported from torch.optim
        self.existing_marks = 0
        self.manual_updates: list[int] = []
        self.loaders: set[str] = set()  # names bound to a DataLoader(...) (or any *Loader)
        self._assigns: list[tuple[list[str], cst.Call]] = []

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node).strip()

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = _dotted(alias.name) or ""
            if name == GPU_MIGRATION:
                self.has_gpu_migration = True
            if name == CORE and alias.asname is not None:
                self.core_alias = _dotted(alias.asname.name)  # type: ignore[arg-type]

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        module = _dotted(node.module) or ""
        for alias in node.names:
            full = f"{module}.{_dotted(alias.name)}"
            bound = _dotted(alias.asname.name) if alias.asname else _dotted(alias.name)  # type: ignore[arg-type]
            if full == GPU_MIGRATION:
                self.has_gpu_migration = True
            if full == CORE:
                self.core_alias = bound
            if module == "torch.optim" and bound:
                self.optimizer_classes.add(bound)

    def visit_Assign(self, node: cst.Assign) -> None:
        if isinstance(node.value, cst.Call):
            self._assigns.append(([self.code(t.target) for t in node.targets], node.value))

    def visit_Expr(self, node: cst.Expr) -> None:
        if _is_mark_step(node):
            self.existing_marks += 1

    def visit_Call(self, node: cst.Call) -> None:
        if _is_manual_update(node):
            self.manual_updates.append(self.get_metadata(PositionProvider, node).start.line)

    def leave_Module(self, original_node: cst.Module) -> None:
        for targets, call in self._assigns:
            callee = _dotted(call.func) or ""
            if _LOADER_CLASS.search(callee):
                self.loaders.update(t.rsplit(".", 1)[-1] for t in targets)
            is_optimizer = (
                ("optim." in callee or callee.startswith("optim")) and "sched" not in callee.lower()
            ) or callee in self.optimizer_classes
            if is_optimizer:
                self.optimizers.update(targets)

    def is_optimizer(self, expr: cst.BaseExpression) -> bool:
        base = expr.value if isinstance(expr, cst.Subscript) else expr
        if self.code(expr) in self.optimizers or self.code(base) in self.optimizers:
            return True
        last = ""
        if isinstance(base, cst.Name):
            last = base.value
        elif isinstance(base, cst.Attribute):
            last = base.attr.value
        return "sched" not in last.lower() and bool(_OPTIMIZER_NAME.search(last))

    def trigger(self, small: cst.CSTNode) -> str | None:
        """'backward' or 'step' when this small statement is a training step's call."""
        call = _small_call(small)
        if call is None or not isinstance(call.func, cst.Attribute):
            return None
        method = call.func.attr.value
        if method == "backward":
            return "backward"
        if method == "step" and (
            self.is_optimizer(call.func.value)
            or bool(call.args and self.is_optimizer(call.args[0].value))
        ):
            return "step"
        return None


@dataclass(eq=False)
class _Loop:
    node: cst.CSTNode
    parent: _Loop | None
    in_no_grad: bool
    batchy: bool
    training: bool = False
    opens_no_grad: bool = False

    def ancestors(self) -> list[_Loop]:
        found: list[_Loop] = []
        loop = self.parent
        while loop is not None:
            found.append(loop)
            loop = loop.parent
        return found


class _LoopFinder(cst.CSTVisitor):
    """Every loop, with its nesting, its no-grad context and whether it trains."""

    def __init__(self, facts: _Facts) -> None:
        super().__init__()
        self.facts = facts
        self.loops: list[_Loop] = []
        self._stack: list[_Loop] = []
        self._no_grad = 0
        self._saved: list[tuple[list[_Loop], int]] = []
        self._withs: list[bool] = []

    # A function or class body is a scope of its own: the loops around its definition do
    # not run its body (a closure's backward() does not make the loop around it a training one).
    def _enter_scope(self, no_grad: bool) -> None:
        self._saved.append((self._stack, self._no_grad))
        self._stack, self._no_grad = [], (1 if no_grad else 0)

    def _leave_scope(self) -> None:
        self._stack, self._no_grad = self._saved.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._enter_scope(any(_is_no_grad(d.decorator) for d in node.decorators))

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._leave_scope()

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._enter_scope(False)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._leave_scope()

    def visit_With(self, node: cst.With) -> None:
        opens = any(_is_no_grad(item.item) for item in node.items)
        self._withs.append(opens)
        if opens:
            self._no_grad += 1
            for loop in self._stack:
                loop.opens_no_grad = True

    def leave_With(self, original_node: cst.With) -> None:
        if self._withs.pop():
            self._no_grad -= 1

    def _enter_loop(self, node: cst.CSTNode, batchy: bool) -> None:
        parent = self._stack[-1] if self._stack else None
        loop = _Loop(node, parent, self._no_grad > 0, batchy)
        self.loops.append(loop)
        self._stack.append(loop)

    def visit_For(self, node: cst.For) -> None:
        names = _names_in(node.iter)
        batchy = any(_BATCHY.search(n) for n in names) or any(
            n in self.facts.loaders for n in names
        )
        self._enter_loop(node, batchy)

    def leave_For(self, original_node: cst.For) -> None:
        self._stack.pop()

    def visit_While(self, node: cst.While) -> None:
        # `while True: batch = next(it)`: over data when it draws from an iterator
        self._enter_loop(node, "next" in _names_in(node))

    def leave_While(self, original_node: cst.While) -> None:
        self._stack.pop()

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self._note_training(node.body)

    def visit_SimpleStatementSuite(self, node: cst.SimpleStatementSuite) -> None:
        self._note_training(node.body)

    def _note_training(self, body: object) -> None:
        if any(self.facts.trigger(s) for s in body):  # type: ignore[attr-defined]
            for loop in self._stack:
                loop.training = True

    def inference_loops(self) -> set[int]:
        """ids of the loop nodes that get a mark_step at the end of each iteration.

        Only loops over data (a loader, batches, an iterator of tensors): a loop over integers
        or over a batch's rows is not a batch boundary. Of nested ones, the outermost.
        """
        candidates = [
            loop
            for loop in self.loops
            if not loop.training and loop.batchy and (loop.in_no_grad or loop.opens_no_grad)
        ]
        chosen = {id(c) for c in candidates}
        return {
            id(loop.node)
            for loop in candidates
            if not any(id(a) in chosen for a in loop.ancestors())  # an outer batch loop has it
        }


class _Drafter(cst.CSTTransformer):
    """Inserts the header and the mark_step() calls; records each insertion as an Edit."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, facts: _Facts, inference: set[int]) -> None:
        super().__init__()
        self.facts = facts
        self.inference = inference
        self.edits: list[Edit] = []
        self._parameter_loops = 0  # inside `for p in ...parameters(): p.data.add_(...)`
        self.header = not (facts.has_gpu_migration and facts.core_alias)
        self.alias = facts.core_alias if not self.header and facts.core_alias else STANDIN

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _mark(self, why: str) -> cst.SimpleStatementLine:
        stmt = cst.parse_statement(
            f"{self.alias}.mark_step()  # migrate init: Gaudi lazy mode, {WHY[why]}\n"
        )
        assert isinstance(stmt, cst.SimpleStatementLine)
        return stmt

    def _small_mark(self) -> cst.Expr:
        return cst.Expr(cst.parse_expression(f"{self.alias}.mark_step()"))

    def _kind(self, body: object) -> str | None:
        kinds = [self.facts.trigger(s) for s in body]  # type: ignore[attr-defined]
        if "step" in kinds:
            return "step"
        if "backward" in kinds:
            return "backward"
        if not self._parameter_loops and any(_updates_parameters(s) for s in body):  # type: ignore[attr-defined]
            return "update"  # a hand-written update is the optimizer step: mark after it
        return None

    def _what(self, body: object) -> str:
        for small in body:  # type: ignore[attr-defined]
            call = _small_call(small)
            if call is not None and (self.facts.trigger(small) or _is_manual_update(call)):
                return f"{self.facts.code(call.func)}()"
        return "the step"

    def _with_marks(self, original: list, updated: list) -> list:
        result: list = []
        for i, (orig, new) in enumerate(zip(original, updated, strict=True)):
            result.append(new)
            if isinstance(orig, cst.SimpleStatementLine):
                kind = self._kind(orig.body)
                if kind is None or any(_is_mark_step(s) for s in orig.body):
                    continue
                what = self._what(orig.body)
            elif not self._parameter_loops and _is_parameter_loop(orig):
                kind, what = "update", "the hand-written parameter update (for loop)"
            else:
                continue
            if i + 1 < len(original) and _line_is_mark_step(original[i + 1]):
                continue  # drafted before (or written by hand): once is enough
            result.append(self._mark(kind))
            self.edits.append(Edit(self._line(orig), f"mark_step after {what}"))
        return result

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body = self._with_marks(list(original_node.body), list(updated_node.body))
        return updated_node.with_changes(body=body)

    def leave_SimpleStatementSuite(
        self, original_node: cst.SimpleStatementSuite, updated_node: cst.SimpleStatementSuite
    ) -> cst.SimpleStatementSuite:
        kind = self._kind(original_node.body)
        if kind is None or any(_is_mark_step(s) for s in original_node.body):
            return updated_node
        what = self._what(original_node.body)
        self.edits.append(Edit(self._line(original_node), f"mark_step after {what}"))
        return updated_node.with_changes(body=[*updated_node.body, self._small_mark()])

    def _end_of_batch(self, original_node: cst.For | cst.While, updated_node):  # noqa: ANN001, ANN202
        if id(original_node) not in self.inference:
            return updated_node
        block = updated_node.body
        if isinstance(block, cst.SimpleStatementSuite):
            if any(_is_mark_step(s) for s in block.body):
                return updated_node
            body = block.with_changes(body=[*block.body, self._small_mark()])
        else:
            stmts = list(block.body)
            if any(_line_is_mark_step(s) for s in stmts):
                return updated_node
            at = len(stmts)
            last = stmts[-1] if stmts else None
            if isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[-1], _JUMPS):
                at -= 1  # before the jump, or it would never run
            stmts.insert(at, self._mark("batch"))
            body = block.with_changes(body=stmts)
        kind = "for" if isinstance(original_node, cst.For) else "while"
        self.edits.append(
            Edit(self._line(original_node), f"mark_step after each batch ({kind} loop)")
        )
        return updated_node.with_changes(body=body)

    def visit_For(self, node: cst.For) -> bool:
        if _is_parameter_loop(node):
            self._parameter_loops += 1
        return True

    def leave_For(self, original_node: cst.For, updated_node: cst.For) -> cst.For:
        if _is_parameter_loop(original_node):
            self._parameter_loops -= 1
        return self._end_of_batch(original_node, updated_node)

    def leave_While(self, original_node: cst.While, updated_node: cst.While) -> cst.While:
        return self._end_of_batch(original_node, updated_node)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body = self._with_marks(list(original_node.body), list(updated_node.body))
        if self.header:
            at = 0
            if body and _is_docstring(body[0]):
                at = 1
            while at < len(body) and _is_future_import(body[at]):
                at += 1
            header = list(cst.parse_module(HEADER).body)
            if at:
                header[0] = header[0].with_changes(leading_lines=[cst.EmptyLine()])
            after = at  # the statement the header now precedes: set it off by a blank line
            if after < len(body) and not body[after].leading_lines:
                body[after] = body[after].with_changes(leading_lines=[cst.EmptyLine()])
            body[at:at] = header
            # body[:at] are untouched originals: the line of the last one, or the top
            line = self._line(original_node.body[at - 1]) if at else 1
            self.edits.append(Edit(line, "GPU Migration turned on before torch is imported"))
        return updated_node.with_changes(body=body)
