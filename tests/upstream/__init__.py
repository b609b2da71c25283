"""Running the test suites of python-memcached, dogpile.cache and Django
against cmemcache: their test files come from their source distributions
on PyPI (``sdist.fetch``), each suite runs in a child process, and the
``tests/test_upstream_*.py`` modules assert which tests ran and passed."""
