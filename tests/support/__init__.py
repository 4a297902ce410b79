"""What the tests share: factories, assertions, the app's route table, process helpers.

Test modules import from here, never from one another; fixtures stay in tests/conftest.py.
"""
