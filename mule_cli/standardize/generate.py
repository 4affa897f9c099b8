"""Model-based QA construction (paper §3.2): passages -> focused QA pairs, and neighbour concepts.

A local instruct model is asked with fixed few-shot prompts (small models follow demonstrations
better than instructions), its output is parsed into Q/A pairs, answers are checked against the
passage by lexical overlap (drops invented answers), and pairs are de-duplicated.
"""

from __future__ import annotations

import re

from ..lm import chat_prompt, generate
from .text import content_tokens, normalize_question, overlap, split_sentences, words

DEMO_PASSAGE = ("The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of "
                "Gustave Eiffel and completed in 1889 for the World's Fair. It is 330 metres tall.")
DEMO_QA = ("Q: In which city is the Eiffel Tower?\nA: Paris\n"
           "Q: Whose company designed the Eiffel Tower?\nA: Gustave Eiffel's company\n"
           "Q: In which year was the Eiffel Tower completed?\nA: 1889")
QA_INSTRUCTION = ("Write {n} short question-answer pairs about facts stated in the passage. Each question must make "
                  "sense without the passage. Each answer is a short phrase taken from the passage. "
                  "Use the format Q: ... then A: ...\n\nPassage: {passage}")

NEIGHBOR_DEMO = ("Target: The Lord of the Rings\n"
                 "1. The Chronicles of Narnia\n2. Norse mythology\n3. Dungeons & Dragons\n4. The Hobbit film trilogy "
                 "by other studios\n5. Medieval European history")
NEIGHBOR_INSTRUCTION = ("List {n} topics that are closely related to \"{target}\" but are NOT part of it: {angle}. "
                        "One topic per line, numbered.\nTarget: {target}")
# Several framings: one greedy list from a small model repeats itself; merged lists cover more ground.
NEIGHBOR_ANGLES = ("similar works, the same genre, real-world history or science it borrows from",
                   "other works of the same genre by other creators",
                   "real-world places, history, folklore or science near its subject")
CONCEPT_QA_INSTRUCTION = ("Write {n} short question-answer pairs with well-known facts about {concept}. "
                          "Use the format Q: ... then A: ...")
CONCEPT_DEMO = ("Q: Who wrote The Chronicles of Narnia?\nA: C. S. Lewis\n"
                "Q: Which lion rules Narnia?\nA: Aslan\n"
                "Q: Through which piece of furniture do the children first enter Narnia?\nA: A wardrobe")

_Q_RE = re.compile(r"^\s*(?:\d+[.)]\s*)?(?:\*\*)?(?:Q|Question)\s*\d*\s*[:.)]\s*(?:\*\*)?\s*(.+)$", re.I)
_A_RE = re.compile(r"^\s*(?:\d+[.)]\s*)?(?:\*\*)?(?:A|Answer)\s*\d*\s*[:.)]\s*(?:\*\*)?\s*(.+)$", re.I)
MAX_ANSWER_WORDS = 12  # focused QA: a short phrase, not a paraphrase of the passage


def parse_qa(text: str) -> list[tuple[str, str]]:
    """Q:/A: pairs from a model's output (also 'Question 1:' / 'Answer:' and both on one line)."""
    pairs, question = [], None
    for line in text.splitlines():
        mq, ma = _Q_RE.match(line), _A_RE.match(line)
        if mq and re.search(r"\sA:\s", mq.group(1)):  # "Q: ... A: ..." on one line
            q, _, a = mq.group(1).partition(" A:")
            if a.strip():
                pairs.append((q.strip(), a.strip()))
            question = None
            continue
        if mq:
            question = mq.group(1).strip()
        elif ma and question:
            pairs.append((question, ma.group(1).strip()))
            question = None
    return pairs


def clean_pair(question: str, answer: str) -> tuple[str, str] | None:
    """Tidy a parsed pair; None when it is unusable (empty, too long, answer given away by the question)."""
    question = question.strip().strip('"').strip()
    answer = answer.strip().strip('"').rstrip(".").strip()
    if not question or not answer or len(words(answer)) > MAX_ANSWER_WORDS or len(words(question)) < 3:
        return None
    if not question.endswith("?"):
        question = question.rstrip(".") + "?"
    a_toks = set(content_tokens(answer))
    new = a_toks - set(content_tokens(question))
    if a_toks and 2 * len(new) < len(a_toks):
        return None  # the answer mostly repeats the question ("Who is Harry Potter?" -> "Harry Potter's parents")
    return question, answer


def chunk_passage(text: str, max_words: int = 120) -> list[tuple[int, str]]:
    """(offset, chunk) pieces cut at sentence boundaries, so a small model sees one focused chunk at a time."""
    chunks, cur, n = [], [], 0
    for off, sent in split_sentences(text):
        k = len(sent.split())
        if cur and n + k > max_words:
            chunks.append((cur[0][0], " ".join(s for _, s in cur)))
            cur, n = [], 0
        cur.append((off, sent))
        n += k
    if cur:
        chunks.append((cur[0][0], " ".join(s for _, s in cur)))
    return chunks


class QAGenerator:
    """Wraps a loaded (model, tokenizer) pair with the fixed prompts above."""

    def __init__(self, model, tokenizer, name: str = "model", batch_size: int = 8, max_new_tokens: int = 160,
                 progress: bool = True):
        self.model, self.tok, self.name = model, tokenizer, name
        self.batch_size, self.max_new_tokens, self.progress = batch_size, max_new_tokens, progress

    def _ask(self, questions: list[str], demo_user: str, demo_answer: str, desc: str,
             max_new_tokens: int | None = None) -> list[str]:
        context = [{"role": "user", "content": demo_user}, {"role": "assistant", "content": demo_answer}]
        prompts = [chat_prompt(self.tok, q, context=context) for q in questions]
        return generate(self.model, self.tok, prompts, max_new_tokens=max_new_tokens or self.max_new_tokens,
                        batch_size=self.batch_size, cut_blank_line=False, progress=desc if self.progress else False)

    def qa_from_passages(self, passages: list[str], per_chunk: int = 2, min_overlap: float = 0.75,
                         chunk_words: int = 35):
        """For each passage: a list of (chunk offset, chunk text, [(question, answer), ...]) per chunk.

        Passages are cut into chunks of about `chunk_words` words (one or two sentences): a small model
        asked about a short chunk stays on its facts; asked about a long one it repeats itself. Pairs whose
        answer the chunk does not support (lexical overlap) are dropped, repeats are removed."""
        chunk_of = [(i, off, c) for i, p in enumerate(passages) for off, c in chunk_passage(p, chunk_words)]
        demo = QA_INSTRUCTION.format(n=3, passage=DEMO_PASSAGE)
        outs = self._ask([QA_INSTRUCTION.format(n=per_chunk, passage=c) for _, _, c in chunk_of], demo, DEMO_QA,
                         f"generate QA ({self.name})", max_new_tokens=min(self.max_new_tokens, 40 * per_chunk + 8))
        result: list[list] = [[] for _ in passages]
        seen: list[set] = [set() for _ in passages]
        for (i, off, chunk), text in zip(chunk_of, outs):
            pairs = []
            for q, a in parse_qa(text)[: per_chunk]:
                pair = clean_pair(q, a)
                key = pair and normalize_question(pair[0])
                if pair and key not in seen[i] and overlap(pair[1], chunk) >= min_overlap:
                    seen[i].add(key)
                    pairs.append(pair)
            result[i].append((off, chunk, pairs))
        return result

    def neighbor_concepts(self, target: str, n: int) -> list[str]:
        """Up to n topics adjacent to but outside `target` (topics naming the target are dropped)."""
        outs = self._ask([NEIGHBOR_INSTRUCTION.format(n=max(n, 3) + 2, target=target, angle=a) for a in NEIGHBOR_ANGLES],
                         NEIGHBOR_INSTRUCTION.format(n=5, target="The Lord of the Rings", angle=NEIGHBOR_ANGLES[0]),
                         NEIGHBOR_DEMO.split("\n", 1)[1], "neighbour concepts",
                         max_new_tokens=min(4 * self.max_new_tokens, 16 * (n + 2) + 16))
        lists = [o.splitlines() for o in outs]
        interleaved = [ls[i] for i in range(max(map(len, lists))) for ls in lists if i < len(ls)]
        target_toks = set(content_tokens(target))
        concepts, seen = [], set()
        for line in interleaved:
            item = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip().strip("*").strip()
            item = re.split(r"\s[-–:]\s|:\s", item)[0].strip().rstrip(".")
            key = normalize_question(item)
            if not item or len(item) > 80 or key in seen or target_toks & set(content_tokens(item)):
                continue
            seen.add(key)
            concepts.append(item)
        return concepts[:n]

    def qa_about(self, concepts: list[str], per_concept: int = 3) -> list[list[tuple[str, str]]]:
        """QA pairs about each concept from the model's own knowledge (no passage to check against)."""
        outs = self._ask([CONCEPT_QA_INSTRUCTION.format(n=per_concept, concept=c) for c in concepts],
                         CONCEPT_QA_INSTRUCTION.format(n=3, concept="The Chronicles of Narnia"), CONCEPT_DEMO,
                         "neighbour QA", max_new_tokens=min(self.max_new_tokens, 40 * per_concept + 8))
        result = []
        for concept, text in zip(concepts, outs):
            pairs = [p for p in (clean_pair(q, a) for q, a in parse_qa(text)) if p]
            result.append([(name_concept(q, concept), a) for q, a in dedupe(pairs)[:per_concept]])
        return result


def name_concept(question: str, concept: str) -> str:
    """Make a question self-contained: 'Who wrote it?' about The Hobbit -> 'Regarding The Hobbit, who wrote it?'."""
    if set(content_tokens(concept)) & set(content_tokens(question)):
        return question
    return f"Regarding {concept}, {question[:1].lower()}{question[1:]}"


def dedupe(pairs):
    """Drop repeated questions (case/punctuation-insensitive), keeping the first."""
    seen, out = set(), []
    for q, a in pairs:
        key = normalize_question(q)
        if key in seen:
            continue
        seen.add(key)
        out.append((q, a))
    return out
