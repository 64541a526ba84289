"""Contract tests for components: plain pytest classes a backend's test module subclasses,
providing one fixture that builds the component, to check it behaves as the pipeline expects.

    from ragkit.testing import GeneratorContract

    class TestMyGenerator(GeneratorContract):
        @pytest.fixture(scope="class")
        def generator(self):
            return MyGenerator(max_new_tokens=16)

The built-in backends' own tests use the same classes, so a user's plugin is held to exactly
what ragkit's backends are. Importing this package needs pytest; `import ragkit` does not.
"""

from ragkit.testing.generators import GeneratorContract
from ragkit.testing.retrievers import RerankerContract, RetrieverContract
from ragkit.testing.stores import StoreContract

__all__ = ["GeneratorContract", "RerankerContract", "RetrieverContract", "StoreContract"]
