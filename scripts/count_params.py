"""How many functions take more than 8 / 10 parameters, and how many return tuples of more than 3
(issue 30's measure): every parameter but self/cls counts, keyword-only and *args/**kw included.

    python scripts/count_params.py src/dualat          # the counts, then the functions over 8
"""
import ast
import pathlib
import sys


def count(root: pathlib.Path):
    rows, tuples = [], []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                rows.append((len([n for n in names if n not in ("self", "cls")]), f"{f}:{node.name}"))
                tuples += [f"{f}:{node.name}" for s in ast.walk(node)
                           if isinstance(s, ast.Return) and isinstance(s.value, ast.Tuple) and len(s.value.elts) > 3]
    return rows, tuples


if __name__ == "__main__":
    rows, tuples = count(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src/dualat"))
    print(f"over 10: {sum(n > 10 for n, _ in rows)}  over 8: {sum(n > 8 for n, _ in rows)}  "
          f"tuple>3 returns: {len(tuples)}")
    for n, name in sorted(rows, reverse=True):
        if n > 8:
            print(n, name)
    for name in tuples:
        print("tuple > 3:", name)
