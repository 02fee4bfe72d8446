"""4 x 4 Sudoku puzzles generated from a seed: solved grids by permutation, then masked cells.

A 4 x 4 Sudoku grid holds the digits 1..4 once in every row, every column and every 2 x 2
box. Every valid grid is reached from one base grid by the symmetries that keep the rules:
a permutation of the digits, of the rows inside each band of two, of the two bands, of the
columns inside each stack, of the two stacks, and a transposition. A puzzle hides
``hidden_cells`` cells of a solved grid (0 = hidden) and is kept only when its solution is
unique (checked against the list of all 288 valid grids), so that the answer is checkable.
"""

from __future__ import annotations

import itertools
from functools import cache

import torch

#: Side of the grid, side of a box, number of cells.
SIDE = 4
BOX = 2
CELLS = SIDE * SIDE
#: A valid grid every other one is a symmetry of.
BASE = ((1, 2, 3, 4), (3, 4, 1, 2), (2, 1, 4, 3), (4, 3, 2, 1))
#: Masked puzzles tried per puzzle before giving up on a unique solution.
MAX_TRIES = 1000


def is_valid_grid(grid: torch.Tensor) -> bool:
    """Whether a 4 x 4 grid (or 16 cells) holds 1..4 once in every row, column and 2 x 2 box."""
    g = torch.as_tensor(grid).reshape(SIDE, SIDE)
    digits = set(range(1, SIDE + 1))
    groups = [g[r] for r in range(SIDE)] + [g[:, c] for c in range(SIDE)]
    groups += [g[r : r + BOX, c : c + BOX].reshape(-1) for r in range(0, SIDE, BOX) for c in range(0, SIDE, BOX)]
    return all(set(int(v) for v in group) == digits for group in groups)


@cache
def all_grids() -> torch.Tensor:
    """Every valid 4 x 4 grid, (288, 16): rows chosen one at a time among the permutations of
    1..4, each kept when no column or box repeats a digit."""
    rows = list(itertools.permutations(range(1, SIDE + 1)))

    def fits(grid: tuple[tuple[int, ...], ...], row: tuple[int, ...]) -> bool:
        if any(row[c] == g[c] for g in grid for c in range(SIDE)):
            return False
        band = grid[len(grid) - len(grid) % BOX :]  # the rows above in the same band
        boxes = ([v for g in (*band, row) for v in g[s : s + BOX]] for s in range(0, SIDE, BOX))
        return all(len(set(box)) == len(box) for box in boxes)

    grids: list[tuple[tuple[int, ...], ...]] = [()]
    for _ in range(SIDE):
        grids = [(*g, row) for g in grids for row in rows if fits(g, row)]
    return torch.tensor(grids).reshape(-1, CELLS)


def completions(puzzle: torch.Tensor) -> int:
    """How many valid grids agree with the puzzle's given cells (nonzero entries)."""
    p = torch.as_tensor(puzzle).reshape(1, CELLS)
    given = p != 0
    return int(((all_grids() == p) | ~given).all(dim=1).sum())


def random_grid(generator: torch.Generator) -> torch.Tensor:
    """A valid grid (16 cells, digits 1..4): the base grid under random symmetries."""
    g = torch.tensor(BASE)

    def perm(n: int) -> torch.Tensor:
        return torch.randperm(n, generator=generator)

    digits = perm(SIDE) + 1
    g = digits[g - 1]
    bands = torch.cat([b * BOX + perm(BOX) for b in perm(SIDE // BOX).tolist()])
    stacks = torch.cat([s * BOX + perm(BOX) for s in perm(SIDE // BOX).tolist()])
    g = g[bands][:, stacks]
    if bool(torch.randint(2, (1,), generator=generator)):
        g = g.T
    return g.reshape(-1).clone()


def sudoku4(
    n: int, hidden_cells: int, generator: torch.Generator, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` puzzles with a unique solution: (puzzles, solutions), both (n, 16) int64; a
    puzzle holds the solution's digit in its given cells and 0 in its ``hidden_cells``
    hidden ones. None equals a row of ``exclude`` (e.g. the training puzzles)."""
    seen = set() if exclude is None else {tuple(p.tolist()) for p in exclude}
    puzzles, solutions = [], []
    for _ in range(n):
        for _ in range(MAX_TRIES):
            grid = random_grid(generator)
            puzzle = grid.clone()
            puzzle[torch.randperm(CELLS, generator=generator)[:hidden_cells]] = 0
            if tuple(puzzle.tolist()) not in seen and completions(puzzle) == 1:
                break
        else:
            raise ValueError(
                f"hidden_cells={hidden_cells} left no new puzzle with a unique solution in {MAX_TRIES} tries; "
                "hide fewer cells or ask for fewer puzzles"
            )
        puzzles.append(puzzle)
        solutions.append(grid)
    return torch.stack(puzzles), torch.stack(solutions)
