"""Questions are encoded as the run's rows were, from embeddings.h5's attributes alone, with the model's
query prompt where its config saves one, else the run's prompt; other weights are refused."""

from __future__ import annotations

import numpy as np
import pytest

from kit.errors import ConfigError
from search.query import QueryPrompt, choose_prompt, load_query_encoder
from search.session import open_search
from tests.search.conftest import QUERY_PROMPTS, fetched_copy, rewrite_with_sidecar


def test_a_model_that_saves_a_query_prompt_encodes_questions_with_it(prompt_run, tmp_path):
    from sentence_transformers import SentenceTransformer

    run, model_folder = prompt_run
    laptop = fetched_copy(run, tmp_path / "laptop")
    with open_search(laptop) as searcher:
        answers = searcher.search(["Which river flows through Cairo?"], k=5)
        assert searcher.prompt == QueryPrompt("query", "query: ")
        assert searcher.prompt.describe() == "the model's query prompt 'query: '"
        assert searcher.encoder.identity.prompt == "passage: "  # the run's rows: the document prompt
        assert searcher.encoder.fingerprint_checked
        encoded = searcher.encoder.encode(["Which river flows through Cairo?"])
    model = SentenceTransformer(str(model_folder), device="cpu", local_files_only=True)
    assert model.prompts["query"] == QUERY_PROMPTS["query"]
    with_query = model.encode(["query: Which river flows through Cairo?"])
    with_document = model.encode(["passage: Which river flows through Cairo?"])
    np.testing.assert_allclose(encoded, with_query, atol=1e-5)
    assert not np.allclose(encoded, with_document, atol=1e-3)
    assert len(answers[0].matches) == 5


def test_a_model_without_a_query_prompt_gets_the_runs_prompt(fetched, st_model):
    encoder = load_query_encoder(fetched / "embeddings.h5")
    assert encoder.prompt == QueryPrompt("document", "")
    assert "the model defines no query prompt" in encoder.prompt.describe()
    np.testing.assert_allclose(
        encoder.encode(["Who painted the Mona Lisa?"]),
        st_model.encode(["Who painted the Mona Lisa?"]),
        atol=1e-5,
    )
    assert choose_prompt(None, "search_document: ") == QueryPrompt("document", "search_document: ")
    assert choose_prompt("", "passage: ") == QueryPrompt("query", "")  # a saved empty query prompt is one


def test_the_model_is_loaded_once_per_process(fetched, tmp_path):
    first = load_query_encoder(fetched / "embeddings.h5")
    again = load_query_encoder(fetched_copy(fetched, tmp_path / "elsewhere") / "embeddings.h5")
    assert again is first  # the same identity: the same encoder, not a second load


def test_other_weights_than_the_runs_are_refused_in_one_line_naming_the_command(fetched):
    def other_weights(h5):
        h5.attrs["provenance_model_fingerprint"] = "f" * 64

    rewrite_with_sidecar(fetched / "embeddings.h5", other_weights)
    with pytest.raises(ConfigError) as refused:
        load_query_encoder(fetched / "embeddings.h5")
    message = str(refused.value)
    assert "\n" not in message and "ffffffffffff" in message
    assert f"make search RUN={fetched}" in message and "MODEL=" in message
