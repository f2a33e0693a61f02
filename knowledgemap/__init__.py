"""The knowledge map: UMAP of the consolidated embeddings, region labels, questions, the page."""
