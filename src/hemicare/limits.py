"""Lengths of the text the records keep, shared by the input models that check them and the tables that store them
(a database refuses what is longer, and PostgreSQL with a server error)."""

from typing import Annotated, Any

from pydantic import BeforeValidator, StringConstraints

CODE_MAX = 48  # characters in a patient's code: the audit trail names a plan version "CODE/vN" in at most 64
REASON_MAX = 500  # characters in a reason: every reason a user gives is kept in the audit trail
ACTOR_MAX = 120  # characters in the name of who acted (a username, the CLI's --by)
TOKEN_NAME_MAX = 120  # characters in what an API token is for
# HemiCare numbers its records (diary entries, sessions, plan versions...) from 1, and they fit in 32 bits; SQLite
# cannot even look up a number beyond 64 (an OverflowError), so a number asked for outside this range is refused.
RECORD_NUMBER_MAX = 2**31 - 1


def _stripped(value: Any) -> Any:
    # Python's idea of blank (str.strip), the same as the web forms' check: pydantic's own stripping keeps control
    # characters such as U+001F, so "00\x1f" passed as a reason of three characters.
    return value.strip() if isinstance(value, str) else value


# A reason a user gives for a change that needs one (removing a record, closing a recall): 3 characters or more once
# blanks at either end are taken off.
# (The constraints before the validator, so that a refusal speaks of characters, not of "items".)
Reason = Annotated[str, StringConstraints(min_length=3, max_length=REASON_MAX), BeforeValidator(_stripped)]
