"""The new-mirror wizard: from chosen instances to a mirror whose members say it is healthy.

Each step's form is checked with the shared rules; a step that changes the members starts the
jobs of members.actions (the same ones the REST API starts) and the next step waits, on the
page, until they have succeeded. The wizard's answers and its jobs live in a Draft row
(storage.py), so a person may leave halfway and carry on later from any browser.
docs/wizard.md walks through it.
"""
