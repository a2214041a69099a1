"""moto tweaks shared by the test packages that drive DynamoDB transactions."""

from __future__ import annotations

import copy
import threading
from types import SimpleNamespace
from typing import Any

import moto.dynamodb.models as moto_dynamodb
import pytest


def one_rollback_copy_per_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto backs up every table a TransactWriteItems call names with a deepcopy of the whole
    table, once per action, to put it back if the call is cancelled: a cost that grows with
    everything the test stored, paid on every call. Back up only the items the call names
    instead (a call can change nothing else), and put those back if it raises. moto still
    checks and applies every action; what a cancelled call leaves is the same."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    real_deepcopy = copy.deepcopy
    original = moto_dynamodb.DynamoDBBackend.transact_write_items

    def table_kept(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else real_deepcopy(value, memo)

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        saved: list[tuple[Any, Any, Any, Any]] = []
        for action in transact_items:
            op = next(iter(action.values()))
            table = self.tables.get(op.get("TableName"))
            key = op.get("Item") or op.get("Key") or {}
            if table is None or table.hash_key_attr not in key:
                continue  # moto refuses the call before changing anything
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = None
            if table.range_key_attr is not None:
                if table.range_key_attr not in key:
                    continue
                range_key = DynamoType(key[table.range_key_attr])
            item = table.get_item(hash_key, range_key)
            saved.append((table, hash_key, range_key, real_deepcopy(item)))
        monkeypatch.setattr(moto_dynamodb, "copy", SimpleNamespace(deepcopy=table_kept))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(saved):
                _restore(table, hash_key, range_key, item)
            raise
        finally:
            monkeypatch.setattr(moto_dynamodb, "copy", copy)

    monkeypatch.setattr(moto_dynamodb.DynamoDBBackend, "transact_write_items", transact_write_items)


def _restore(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Put one item back as it was before a cancelled transaction (None: absent)."""
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    if item is None:
        table.items[hash_key].pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


_moto_lock = threading.RLock()


def serialized_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """One DynamoDB call at a time, as the real service's per-item ordering would have it.

    moto runs a TransactWriteItems against the live table and, when the transaction is
    cancelled, restores a whole-table copy taken before it, without a lock: a concurrent
    call's writes in between are undone. DynamoDB itself never does that, so tests that race
    threads against each other (erasure versus consumer) serialize moto's handler."""
    import moto.dynamodb.responses as responses

    original = responses.DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _moto_lock:
            return original(self)

    monkeypatch.setattr(responses.DynamoHandler, "call_action", call_action)


_query_filter = threading.local()


def fast_sorted_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto answers every Query by sorting *all* items of the table through its DynamoType
    wrappers, then filtering by the hash key: each Query costs O(table) casts. Our keys are
    all strings, so (1) a Query only looks at items carrying the queried hash value and
    (2) sorting uses the raw strings. moto still applies its own key conditions, filters,
    ordering and pagination to that subset, so results are unchanged; only time drops."""
    from moto.dynamodb.models.table import Table

    original_all_items = Table.all_items
    original_query = Table.query

    def all_items(self: Any) -> Any:
        wanted = getattr(_query_filter, "value", None)
        items: list[Any] = []
        for hash_set in self.items.values():
            candidates = hash_set.values() if self.range_key_attr else [hash_set]
            if wanted is None or wanted[0] is not self:
                items.extend(candidates)
                continue
            _, attribute, value = wanted
            for item in candidates:
                found = item.attrs.get(attribute)
                if found is not None and found.type == "S" and found.value == value:
                    items.append(item)
        if not all(
            item.hash_key.type == "S" and (item.range_key is None or item.range_key.type == "S")
            for item in items
        ):
            return original_all_items(self)
        return sorted(
            items,
            key=lambda x: (x.hash_key.value, x.range_key.value if x.range_key else ""),
        )

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name") or (args[6] if len(args) > 6 else None)
        if hash_key is None or hash_key.type != "S":
            return original_query(self, hash_key, *args, **kwargs)
        attribute = self.hash_key_attr
        if index_name:
            index = self.get_index(index_name)
            attribute = next(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
        _query_filter.value = (self, attribute, hash_key.value)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _query_filter.value = None

    monkeypatch.setattr(Table, "all_items", all_items)
    monkeypatch.setattr(Table, "query", query)
