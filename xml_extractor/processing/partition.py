"""Which instance an application belongs to: one function, the same in SQL and in Python.

SQL's ``%`` truncates toward zero, so ``-7 % 3`` is ``-1`` there and ``2`` in Python; a filter
``id % N = I`` therefore matched no instance at all for a negative id that N does not divide.
The partition used everywhere (selection, counts, reprocess) is the non-negative remainder
``((id % N) + N) % N``: in SQL ``|id % N| < N``, so adding N cannot overflow even for
-2**63 or 2**63-1, and the result is in ``[0, N)``; in Python it equals ``id % N`` (floor modulo
with a positive divisor). Every id, negative included, lands in exactly one of N instances.

The named queries write it once, as the ``in_share`` fragment of db/sql/common.sql with the parameters
``:modulus`` (N) and ``:remainder`` (the instance id); :func:`instance_of` is its Python twin.
"""

from __future__ import annotations

# the id range selection covers by default: every id a source column can hold on any supported
# engine (SQLite INTEGER and BIGINT are signed 64-bit), except -2**63 itself: keyset paging binds
# "id > after" with after = first - 1, which must fit in 64 bits too
ID_MIN = -(2**63) + 1
ID_MAX = 2**63 - 1


def instance_of(app_id: int, instance_count: int) -> int:
    """The instance (0..N-1) that owns ``app_id``; identical to the SQL expression above."""
    if instance_count < 1:
        raise ValueError("instance_count must be at least 1")
    return ((app_id % instance_count) + instance_count) % instance_count


def mine(app_ids: list[int], instance_id: int, instance_count: int) -> list[int]:
    """The ids of ``app_ids`` that belong to this instance, sorted, without duplicates."""
    return [i for i in sorted(set(app_ids)) if instance_of(i, instance_count) == instance_id]
