"""Ask a run's rows a question: exact search, an index, and smaller copies of the vectors.

The API the CLI (``make search``, ``make index``, the ``INDEX=1`` stage, ``make fetch``) and the
map's page build on; each module's docstring has the detail and an example.

One call for a question (``search.session``)::

    with open_search("runs/demo") as searcher:          # method: index if present, else exact,
        print(searcher.describe())                       # else binary copies; "exact search of ..."
        answers = searcher.search(["Which river flows through Cairo?"], k=10)
        print(searcher.prompt.describe())                # "the model's query prompt 'query: '"
        answers[0].matches[0].rank, .row, .score, .fields["title"], .fields["url"]
        answers[0].to_dict()                             # plain JSON for a QUERIES= results file
    searcher.search_vectors(vectors, k)                  # already encoded (map.h5's questions): Hits
    searcher.answers(queries, hits)                      # Hits named, as Answer records

The parts:

- ``search.query``: ``load_query_encoder(embeddings_h5, model=None) -> QueryEncoder``; its
  ``encode(texts) -> float32 [n, D]``, ``prompt`` (``QueryPrompt``: name ``query`` or
  ``document``, text, ``describe()``), ``fingerprint_checked``. Loaded once per process.
- ``search.vectors``: ``VectorFile(path, dataset="embeddings")``: any float [N, D] HDF5 dataset,
  memory-mapped where contiguous; ``RowNamer`` / ``TextFields``: what row i is called (a passage
  run supplies its own namer and dataset). ``file_identity(path) -> ShardIdentity``.
- ``search.exact``: ``exact_search(vectors, queries, k, threads) -> Hits`` (rows int64 [Q, k],
  scores float32 [Q, k], best first, ties by row); ``scan`` for any score function.
- ``search.index``: ``build_index(embeddings_h5) -> IndexRecord`` (writes embeddings.faiss,
  its .sha256 and embeddings.faiss.json); ``open_index(embeddings_h5, required=False) ->
  SearchIndex | None``, refusing a stale or damaged index with ``IndexMismatchError`` (one line
  ending in ``make index RUN=<run>``); ``SearchIndex.search(vectors, queries, k) -> Hits``.
  ``search.indexfile.index_files(embeddings_h5)``: the three files ``make fetch`` brings.
  ``search.indexplan.plan_index(rows, dim) -> IndexPlan``: which index, and why.
- ``search.compact``: ``write_compact(embeddings_h5, "int8" | "binary", digest) ->
  CompactResult`` (``make export FORMAT=int8|binary`` calls it through merge/exporter.py);
  ``compact_search(binary_file, queries, k, rescorer=int8_file) -> Hits``.
  ``search.compactfile.open_int8`` / ``open_binary``: the copies beside embeddings.h5, checked.

Nothing here imports torch until a question is encoded, nor faiss until an index is built or
opened.
"""
