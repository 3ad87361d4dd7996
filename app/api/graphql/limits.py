"""How much a GraphQL document may ask for, decided before any resolver runs.

One validation rule measures each operation (fragments expanded, each fragment
measured once): its depth (the longest chain of nested fields), its cost (every
field costs 1; a paginated list field multiplies what it selects by its page size,
a variable page size counting as the largest; a seat map's seats count ten times), and its aliases. Past a limit the
document is refused with ``extensions.code`` ``query_too_deep``,
``query_too_costly`` or ``too_many_aliases``; nothing runs.
"""
from __future__ import annotations

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

MAX_DEPTH = 15  # GraphiQL's introspection query nests 13 deep
MAX_COST = 10_000  # fifty showtimes with their movie, theater, city and whole seat map cost about 5,500
MAX_ALIASES = 30
MAX_TOKENS = 5000  # parsing stops there (strawberry's MaxTokensLimiter)
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# The list fields that take `page`/`pageSize`: what they select counts once per item.
PAGINATED_FIELDS = frozenset({"movies", "cities", "theaters", "showtimes", "reservations"})
# Unpaginated lists, as the items they count for: a seat map's seats (a screen has tens to
# hundreds), a reservation's seats and tickets (at most MAX_SEATS_PER_HOLD).
LIST_WEIGHTS = {"seats": 10, "tickets": 2}


class _Measure:
    __slots__ = ("depth", "cost", "aliases")

    def __init__(self, depth: int = 0, cost: int = 0, aliases: int = 0) -> None:
        self.depth, self.cost, self.aliases = depth, cost, aliases


def page_size_of(field: FieldNode) -> int:
    """The page size a paginated field asks for: a literal (clamped to the maximum),
    the maximum for a variable, the default when absent."""
    for argument in field.arguments or ():
        if argument.name.value == "pageSize":
            if isinstance(argument.value, IntValueNode):
                try:
                    return max(1, min(int(argument.value.value), MAX_PAGE_SIZE))
                except ValueError:
                    return MAX_PAGE_SIZE
            return MAX_PAGE_SIZE
    return DEFAULT_PAGE_SIZE


class QueryLimits(ValidationRule):
    """Refuses an operation past ``MAX_DEPTH``, ``MAX_COST`` or ``MAX_ALIASES``."""

    def __init__(self, context) -> None:
        super().__init__(context)
        self.fragments = {definition.name.value: definition for definition in context.document.definitions
                          if isinstance(definition, FragmentDefinitionNode)}
        self.measured: dict[str, _Measure] = {}

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args):
        measure = self._selections(node.selection_set, set())
        name = node.name.value if node.name else "anonymous"
        if measure.depth > MAX_DEPTH:
            self.report_error(GraphQLError(
                f"Operation {name} nests {measure.depth} fields deep; at most {MAX_DEPTH} are allowed", node,
                extensions={"code": "query_too_deep", "depth": measure.depth, "max_depth": MAX_DEPTH}))
        if measure.cost > MAX_COST:
            self.report_error(GraphQLError(
                f"Operation {name} could cost {measure.cost} (each field 1, paginated lists times their "
                f"page size); at most {MAX_COST} is allowed: ask for fewer fields or smaller pages", node,
                extensions={"code": "query_too_costly", "cost": measure.cost, "max_cost": MAX_COST}))
        if measure.aliases > MAX_ALIASES:
            self.report_error(GraphQLError(
                f"Operation {name} has {measure.aliases} aliases; at most {MAX_ALIASES} are allowed", node,
                extensions={"code": "too_many_aliases", "aliases": measure.aliases, "max_aliases": MAX_ALIASES}))
        return self.SKIP

    def _selections(self, selection_set: SelectionSetNode | None, visiting: set[str]) -> _Measure:
        total = _Measure()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                part = self._field(selection, visiting)
            elif isinstance(selection, InlineFragmentNode):
                part = self._selections(selection.selection_set, visiting)
            elif isinstance(selection, FragmentSpreadNode):
                part = self._fragment(selection.name.value, visiting)
            else:  # pragma: no cover - the grammar has no other selection
                continue
            total.depth = max(total.depth, part.depth)
            total.cost += part.cost
            total.aliases += part.aliases
        return total

    def _field(self, field: FieldNode, visiting: set[str]) -> _Measure:
        inner = self._selections(field.selection_set, visiting)
        name = field.name.value
        times = page_size_of(field) if name in PAGINATED_FIELDS else LIST_WEIGHTS.get(name, 1)
        return _Measure(inner.depth + 1, 1 + times * inner.cost, inner.aliases + (1 if field.alias else 0))

    def _fragment(self, name: str, visiting: set[str]) -> _Measure:
        if name in self.measured:
            return self.measured[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in visiting:  # unknown or cyclic: other rules report it
            return _Measure()
        measure = self._selections(fragment.selection_set, visiting | {name})
        self.measured[name] = measure
        return measure
