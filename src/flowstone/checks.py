"""Built-in helpers for common asset checks, on Arrow tables and lists of dicts.

``row_count(value, min=, max=)``, ``no_nulls(value, columns)`` and ``unique(value,
column)`` each return a :class:`flowstone.CheckResult`, for use inside an ``@fs.check``
function. pyarrow is imported only when a value is an Arrow table.
"""

from ._core.check_helpers import no_nulls as no_nulls
from ._core.check_helpers import row_count as row_count
from ._core.check_helpers import unique as unique

__all__ = ("no_nulls", "row_count", "unique")
