"""Names for regions: the majority topic where the corpus has topics, else the words that set a
region's titles and texts apart (class-based TF-IDF, as BERTopic names topics), else its most
central title. Pure functions of arrays and strings."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

NO_TOPIC = {"", "uncategorized", "uncategorised", "unknown", "other", "none"}  # not a name for a region
MIN_TOPIC_SHARE = 0.4  # the majority topic must hold this share of a region's topical articles
TELLING_SHARE = 0.6  # a word after the first names a region only if it scores this share of the first's
TOKEN = re.compile(r"(?u)\b[^\W\d_]{3,}\b")  # a word as the vectoriser sees it
SENTENCE_ENDS = (
    '.!?:;"(\u201c\n'  # a word after one of these (or first in its doc) may be capitalised for that
)
# Words frequent in encyclopaedic leads that say nothing about a region.
EXTRA_STOP = {
    "also",
    "known",
    "used",
    "use",
    "many",
    "one",
    "two",
    "first",
    "may",
    "often",
    "including",
    "called",
    "part",
    "such",
    "well",
    "new",
    "world",
    "term",
    "refers",
    "century",
    "centuries",
    "large",
    "several",
    "common",
    "commonly",
    "usually",
    "generally",
    "various",
    "however",
    "among",
    "within",
    "since",
    "became",
    "considered",
    "widely",
    "based",
    "form",
    "forms",
    "type",
    "types",
    "include",
    "includes",
}


def majority_topics(labels: np.ndarray, count: int, topics: list[str]) -> list[str | None]:
    """Per region, its most frequent topic, or None where no topic holds MIN_TOPIC_SHARE of its topical rows."""
    per_region: list[Counter] = [Counter() for _ in range(count)]
    for region, topic in zip(labels.tolist(), topics):
        if topic.strip().lower() not in NO_TOPIC:
            per_region[region][topic] += 1
    out: list[str | None] = []
    for counter in per_region:
        top = counter.most_common(1)
        out.append(top[0][0] if top and top[0][1] >= MIN_TOPIC_SHARE * sum(counter.values()) else None)
    return out


def distinctive_terms(labels: np.ndarray, count: int, docs: list[str], top: int = 4) -> list[list[str]]:
    """Per region, its ``top`` words by class-based TF-IDF (each region's documents as one class).

    tf = a word's share of the region's words; idf = log(1 + mean words per region / the word's
    count in all regions) (Grootendorst 2022, BERTopic's c-TF-IDF).
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    vectorizer = CountVectorizer(
        stop_words=list(ENGLISH_STOP_WORDS | EXTRA_STOP),
        lowercase=True,
        token_pattern=r"(?u)\b[^\W\d_]{3,}\b",
        min_df=2,
        max_features=1 << 16,
        dtype=np.float32,
    )
    try:
        words = vectorizer.fit_transform(docs)
    except ValueError:  # no word occurs twice
        return [[] for _ in range(count)]
    onehot = sparse.csr_matrix(
        (np.ones(len(labels), np.float32), (labels, np.arange(len(labels)))), shape=(count, len(labels))
    )
    per_class = (onehot @ words).toarray()  # [count, vocabulary]
    totals = np.maximum(per_class.sum(axis=1, keepdims=True), 1)
    idf = np.log1p(per_class.sum() / count / np.maximum(per_class.sum(axis=0), 1))
    score = per_class / totals * idf
    vocabulary = vectorizer.get_feature_names_out()
    ranked = [[(vocabulary[j], row[j]) for j in np.argsort(-row)[: top * 3] if row[j] > 0] for row in score]
    ranked = [_distinct(terms)[:top] for terms in ranked]
    forms = surface_forms(docs, {w for terms in ranked for w, _ in terms})
    return [[forms.get(w, w) for w, s in terms if s >= TELLING_SHARE * terms[0][1]] for terms in ranked]


def surface_forms(docs: list[str], words: set[str], sample: int = 20_000) -> dict[str, str]:
    """Each lowercased word's most frequent spelling where it does not start a sentence ("German",
    "DNA", "Buddhism"; "physicist" stays lower), over an even sample of ``sample`` docs."""
    counts: dict[str, Counter] = {w: Counter() for w in words}
    step = max(1, len(docs) // sample)
    for doc in docs[::step]:
        for match in TOKEN.finditer(doc):
            word = match.group()
            forms = counts.get(word.lower())
            if forms is not None and not _starts_sentence(doc, match.start()):
                forms[word] += 1
    return {w: max(c, key=lambda f: (c[f], f.islower())) for w, c in counts.items() if c}


def _starts_sentence(doc: str, start: int) -> bool:
    before = doc[max(0, start - 4) : start].rstrip(" \t")
    return (not before and start <= 4) or (before[-1:] in SENTENCE_ENDS and before != "")


def _distinct(terms: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Drop a word that shares its first five letters (all of the shorter) with a better one (cell, cells, cellular)."""
    out: list[tuple[str, float]] = []
    for term, score in terms:
        if not any(
            term[: min(5, len(term), len(kept))] == kept[: min(5, len(term), len(kept))] for kept, _ in out
        ):
            out.append((term, score))
    return out


def central_titles(coords: np.ndarray, labels: np.ndarray, count: int, titles: list[str]) -> list[str]:
    """Per region, the title of the point nearest the region's median position."""
    out = []
    for r in range(count):
        members = np.flatnonzero(labels == r)
        centre = np.median(coords[members], axis=0)
        out.append(titles[members[np.argmin(((coords[members] - centre) ** 2).sum(axis=1))]])
    return out


def terms_name(terms: list[str], words: int = 2) -> str:
    """'Opera, composer': the first ``words`` terms, the first capitalised."""
    text = ", ".join(terms[:words])
    return text[:1].upper() + text[1:]


def name_level(topic_names: list[str | None], terms: list[list[str]], central: list[str]) -> list[str]:
    """One name per region: its topic, qualified by its first term where several regions share the topic;
    otherwise two distinctive terms; otherwise its central title."""
    shared = Counter(t for t in topic_names if t)
    names = []
    for topic, words, title in zip(topic_names, terms, central):
        if topic and shared[topic] > 1 and words:
            names.append(f"{topic}: {words[0]}")
        elif topic:
            names.append(topic)
        else:
            names.append(terms_name(words) if words else title)
    return _unique(names, terms)


def _unique(names: list[str], terms: list[list[str]]) -> list[str]:
    """Where two regions got the same name, add each one's next distinctive term."""
    seen = Counter(names)
    out = []
    for name, words in zip(names, terms):
        extra = next((w for w in words if w.lower() not in name.lower()), None)
        out.append(f"{name}, {extra}" if seen[name] > 1 and extra else name)
    return out
