"""The official Omise Python library, unmodified, against the linkbatch sandbox.

Usage: python omise_python.py BASE_URL
Creates, retrieves, lists and destroys a link through the library's public API; the only setting changed
is `omise.api_main`, the library's own base-URL setting. Exits non-zero on the first mismatch.
"""
import sys

import omise

base = sys.argv[1]
omise.api_main = base
omise.api_secret = "skey_test_" + "pythoncompat"

link = omise.Link.create(
    amount=100000,
    currency="thb",
    title="Hot Latte",
    description="A warm cup of coffee",
    multiple=True,
)
assert link.id.startswith("link_test_"), link.id
assert link.amount == 100000 and link.currency == "thb" and link.multiple is True, link
assert link.payment_uri.startswith(base), link.payment_uri

again = omise.Link.retrieve(link.id)
assert again.id == link.id and again.title == "Hot Latte", again

listed = [l.id for l in omise.Link.list()]
assert link.id in listed, listed

link.destroy()
assert link.deleted is True, link
assert link.id not in [l.id for l in omise.Link.list()]

try:
    omise.Link.create(amount=-1, currency="thb", title="x", description="y")
    raise SystemExit("a negative amount was accepted")
except omise.errors.BaseError as error:
    assert "amount" in str(error), error

omise.api_secret = "pkey_test_" + "notsecret"
try:
    omise.Link.retrieve(link.id)
    raise SystemExit("a public key was accepted")
except omise.errors.AuthenticationFailureError:
    pass

print("omise-python: create, retrieve, list, destroy and errors OK against", base)
