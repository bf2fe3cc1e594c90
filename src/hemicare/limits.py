"""Lengths of the text the records keep, shared by the input models that check them and the tables that store them
(a database refuses what is longer, and PostgreSQL with a server error)."""

CODE_MAX = 48  # characters in a patient's code: the audit trail names a plan version "CODE/vN" in at most 64
REASON_MAX = 500  # characters in a reason: every reason a user gives is kept in the audit trail
ACTOR_MAX = 120  # characters in the name of who acted (a username, the CLI's --by)
TOKEN_NAME_MAX = 120  # characters in what an API token is for
