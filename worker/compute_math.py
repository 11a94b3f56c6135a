"""The math task: a safe evaluator for ``!math``, on Python's own parser and an allow-list.

The expression is parsed with ``ast`` (the standard library's parser, so the grammar is
Python's arithmetic: ``2**10``, ``(3*7)-4``, ``sqrt(2)``) and then walked node by node: only
numbers, arithmetic, the listed functions and constants, and variables assigned earlier in the
same input (``r = 2; pi * r**2``) are allowed. There is no ``eval``, no attribute access, no
names outside the allow-list. Work is bounded before it is done: the size of a power's result
is estimated from its operands, factorials and digit counts are capped, and so are the input's
length, nesting and node count. Errors say where (a 1-based column) and what.

No library is used: the well-kept evaluators either run ``eval`` underneath or bring far more
than arithmetic, and the allow-list over ``ast`` is short enough to read in full here.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Final

Number = int | float

MAX_LENGTH: Final = 500
MAX_NODES: Final = 200
MAX_DEPTH: Final = 40
MAX_DIGITS: Final = 10_000  # of an integer result, or of an intermediate one
MAX_BITS: Final = int(MAX_DIGITS * math.log2(10)) + 1
MAX_FACTORIAL: Final = 3_000  # 3000! has 9,131 digits
MAX_VARIABLES: Final = 20
# The digits argument of round(): round(x, -n) computes 10**n, so n is bounded like a result.
MAX_ROUND_DIGITS: Final = MAX_DIGITS
# An exponent past this many bits cannot even be made a float (0.5 ** 10**9999): refused.
MAX_EXPONENT_BITS: Final = 64

CONSTANTS: Final[dict[str, float]] = {"pi": math.pi, "e": math.e, "tau": math.tau}


class MathError(ValueError):
    """Why an expression was refused; ``position`` is its 1-based column (0: the whole input)."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(f"position {position}: {problem}" if position else problem)
        self.position = position
        self.problem = problem


def evaluate(text: str) -> Number:
    """The value of ``text``: statements ``name = expression`` separated by ``;``, then one
    expression, whose value is returned."""
    if len(text) > MAX_LENGTH:
        raise MathError(0, f"the input is {len(text)} characters; the limit is {MAX_LENGTH}")
    if not text.strip():
        raise MathError(0, "there is nothing to evaluate")
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError as error:
        raise MathError(error.offset or 0, f"not an expression: {error.msg}") from None
    except (ValueError, MemoryError, RecursionError) as error:
        raise MathError(0, f"not an expression: {error}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise MathError(0, f"the input has {nodes} parts; the limit is {MAX_NODES}")
    return Evaluator().run(tree)


def format_number(value: Number) -> str:
    """A result as text: every digit of an integer, the shortest exact form of a float.

    Integers of more than 4,300 digits need ``sys.set_int_max_str_digits`` raised to
    ``MAX_DIGITS`` first (the compute worker does it once).
    """
    return str(value) if isinstance(value, int) else repr(value)


class Evaluator:
    def __init__(self) -> None:
        self.variables: dict[str, Number] = {}

    def run(self, tree: ast.Module) -> Number:
        body = tree.body
        if not body or not isinstance(body[-1], ast.Expr):
            raise MathError(0, "the input must end with an expression to evaluate")
        for statement in body[:-1]:
            self._assign(statement)
        last = body[-1]
        assert isinstance(last, ast.Expr)
        return self._check(self._value(last.value, 0), last.value)

    def _assign(self, statement: ast.stmt) -> None:
        if not (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            raise MathError(
                statement.col_offset + 1, "only `name = expression` may come before the result"
            )
        name = statement.targets[0].id
        if name in CONSTANTS or name in FUNCTIONS:
            raise MathError(statement.col_offset + 1, f"{name!r} is a built-in name")
        if name not in self.variables and len(self.variables) >= MAX_VARIABLES:
            raise MathError(statement.col_offset + 1, f"more than {MAX_VARIABLES} variables")
        self.variables[name] = self._check(self._value(statement.value, 0), statement.value)

    def _value(self, node: ast.expr, depth: int) -> Number:
        position = getattr(node, "col_offset", -1) + 1
        if depth > MAX_DEPTH:
            raise MathError(position, f"nested deeper than {MAX_DEPTH}")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise MathError(position, f"{node.value!r} is not a number")
            return self._check(node.value, node)
        if isinstance(node, ast.Name):
            if node.id in self.variables:
                return self.variables[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise MathError(position, f"unknown name {node.id!r}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
            operand = self._value(node.operand, depth + 1)
            return operand if isinstance(node.op, ast.UAdd) else -operand
        if isinstance(node, ast.BinOp):
            operator = BINARY.get(type(node.op))
            if operator is None:
                raise MathError(position, f"the operator {type(node.op).__name__} is not allowed")
            left = self._value(node.left, depth + 1)
            right = self._value(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                check_power(left, right, position)
            try:
                return self._check(operator(left, right), node)
            except ZeroDivisionError:
                raise MathError(position, "division by zero") from None
            except OverflowError:
                raise MathError(position, "the result is too large") from None
        if isinstance(node, ast.Call):
            return self._call(node, depth, position)
        if isinstance(node, ast.Attribute):
            raise MathError(position, "attribute access is not allowed")
        raise MathError(position, f"{type(node).__name__} is not allowed here")

    def _call(self, node: ast.Call, depth: int, position: int) -> Number:
        if isinstance(node.func, ast.Attribute):
            raise MathError(position, "attribute access is not allowed")
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            shown = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
            raise MathError(position, f"unknown function {shown!r}")
        if node.keywords:
            raise MathError(position, "functions take no keyword arguments")
        name = node.func.id
        function, arity = FUNCTIONS[name]
        arguments = [self._value(argument, depth + 1) for argument in node.args]
        low, high = arity
        if not low <= len(arguments) <= high:
            expected = f"{low}" if low == high else f"{low} to {high}"
            raise MathError(position, f"{name} takes {expected} arguments, got {len(arguments)}")
        if name == "round" and len(arguments) == 2:
            digits = arguments[1]
            if not isinstance(digits, int):
                raise MathError(position, "round's number of digits must be an integer")
            if abs(digits) > MAX_ROUND_DIGITS:
                raise MathError(position, f"round to more than {MAX_ROUND_DIGITS} digits")
        if name == "factorial":
            value = arguments[0]
            if not (isinstance(value, int) or float(value).is_integer()) or value < 0:
                raise MathError(position, "factorial needs a non-negative integer")
            if value > MAX_FACTORIAL:
                raise MathError(position, f"factorial of more than {MAX_FACTORIAL} is refused")
            arguments = [int(value)]
        try:
            return self._check(function(*arguments), node)
        except (ValueError, TypeError) as error:
            raise MathError(position, f"{name}: {error}") from None
        except ZeroDivisionError:  # log(x, 1)
            raise MathError(position, f"{name}: division by zero") from None
        except OverflowError:
            raise MathError(position, f"{name}: the result is too large") from None

    @staticmethod
    def _check(value: Number, node: ast.AST) -> Number:
        position = getattr(node, "col_offset", -1) + 1
        if not isinstance(value, int | float):  # (-1) ** 0.5 is complex
            raise MathError(position, "the result is not a real number")
        if isinstance(value, float) and not math.isfinite(value):
            raise MathError(position, "the result is not a finite number")
        if isinstance(value, int) and value.bit_length() > MAX_BITS:
            raise MathError(position, f"the result has more than {MAX_DIGITS} digits")
        return value


def check_power(base: Number, exponent: Number, position: int) -> None:
    """Refuse a power whose result would be too large or not real, before computing it."""
    if isinstance(exponent, int) and exponent.bit_length() > MAX_EXPONENT_BITS:
        raise MathError(position, f"the exponent has more than {MAX_EXPONENT_BITS} bits")
    if base < 0 and not float(exponent).is_integer():
        raise MathError(position, "a negative number to a fractional power is not a real number")
    if base in (0, 1, -1) or exponent <= 0:
        return
    digits = exponent * math.log10(abs(base))
    if digits > MAX_DIGITS:
        raise MathError(
            position, f"the power would have about {digits:,.0f} digits; the limit is {MAX_DIGITS}"
        )


def checked_log(value: Number, base: Number = math.e) -> float:
    return math.log(value, base)


BINARY: Final[dict[type[ast.operator], Callable[[Number, Number], Number]]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}

# name -> (function, (fewest, most) arguments)
FUNCTIONS: Final[dict[str, tuple[Callable[..., Number], tuple[int, int]]]] = {
    "sqrt": (math.sqrt, (1, 1)),
    "sin": (math.sin, (1, 1)),
    "cos": (math.cos, (1, 1)),
    "tan": (math.tan, (1, 1)),
    "log": (checked_log, (1, 2)),
    "ln": (math.log, (1, 1)),
    "exp": (math.exp, (1, 1)),
    "abs": (abs, (1, 1)),
    "round": (round, (1, 2)),
    "floor": (math.floor, (1, 1)),
    "ceil": (math.ceil, (1, 1)),
    "factorial": (math.factorial, (1, 1)),
    "gcd": (math.gcd, (2, 8)),
    "lcm": (math.lcm, (2, 8)),
    "min": (min, (1, 8)),
    "max": (max, (1, 8)),
}
