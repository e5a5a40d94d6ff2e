"""Every task's text-to-text format on literal examples (T5's preprocessors), and its postprocessor."""

import pytest

from t5lit.data.tasks import get_task
from t5lit.data.tasks.glue import stsb_target
from t5lit.data.tasks.squad import pad_punctuation
from t5lit.data.tasks.superglue import record_passage, wsc_marked_text

GLUE_CASES = [
    ("glue_cola", {"sentence": "John ran.", "label": 1}, "cola sentence: John ran.", "acceptable"),
    ("glue_cola", {"sentence": "Ran John the.", "label": 0}, "cola sentence: Ran John the.", "unacceptable"),
    ("glue_sst2", {"sentence": "a charming journey ", "label": 1}, "sst2 sentence: a charming journey ", "positive"),
    ("glue_mrpc", {"sentence1": "He left.", "sentence2": "He went.", "label": 1},
     "mrpc sentence1: He left. sentence2: He went.", "equivalent"),
    ("glue_qqp", {"question1": "Why?", "question2": "How?", "label": 0},
     "qqp question1: Why? question2: How?", "not_duplicate"),
    ("glue_stsb", {"sentence1": "A man sings.", "sentence2": "A man is singing.", "label": 3.84},
     "stsb sentence1: A man sings. sentence2: A man is singing.", "3.8"),
    ("glue_mnli", {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0},
     "mnli hypothesis: An animal moves. premise: A dog runs.", "entailment"),
    ("glue_mnli", {"premise": "A dog runs.", "hypothesis": "A cat sleeps.", "label": 2},
     "mnli hypothesis: A cat sleeps. premise: A dog runs.", "contradiction"),
    ("glue_qnli", {"question": "Who ran?", "sentence": "John ran.", "label": 0},
     "qnli question: Who ran? sentence: John ran.", "entailment"),
    ("glue_rte", {"sentence1": "A dog ran.", "sentence2": "A cat ran.", "label": 1},
     "rte sentence1: A dog ran. sentence2: A cat ran.", "not_entailment"),
    ("glue_wnli", {"sentence1": "It fell.", "sentence2": "The cup fell.", "label": 1},
     "wnli sentence1: It fell. sentence2: The cup fell.", "entailment"),
    ("glue_rte", {"sentence1": "A.", "sentence2": "B.", "label": -1}, "rte sentence1: A. sentence2: B.", "<unk>"),
]


@pytest.mark.parametrize("name,example,inputs,targets", GLUE_CASES)
def test_glue_formats(name, example, inputs, targets):
    assert get_task(name).format(example) == {"inputs": inputs, "targets": targets}


@pytest.mark.parametrize("label,text", [(0.0, "0.0"), (5.0, "5.0"), (1.8, "1.8"), (3.75, "3.8"), (2.333, "2.4"),
                                        (0.5, "0.4"), (4.9, "4.8")])
def test_stsb_rounds_to_steps_of_0_2(label, text):
    # 0.5 * 5 = 2.5 rounds half to even -> 2 -> 0.4, as tf.round does.
    assert stsb_target(label) == text


SUPER_GLUE_CASES = [
    ("super_glue_boolq", {"question": "is it wet", "passage": "Water -- It is wet.", "label": 1},
     "boolq passage: Water -- It is wet. question: is it wet", "True"),
    ("super_glue_cb", {"premise": "He said it rained.", "hypothesis": "it rained", "label": 2},
     "cb hypothesis: it rained premise: He said it rained.", "neutral"),
    ("super_glue_copa", {"premise": "I slipped.", "choice1": "The floor was wet.", "choice2": "I sang.",
                         "question": "cause", "label": 0},
     "copa choice1: The floor was wet. choice2: I sang. premise: I slipped. question: cause", "choice1"),
    ("super_glue_rte", {"premise": "A dog ran.", "hypothesis": "An animal ran.", "label": 0},
     "rte hypothesis: An animal ran. premise: A dog ran.", "entailment"),
    ("super_glue_wic", {"word": "bank", "sentence1": "The river bank.", "sentence2": "The bank loaned money.",
                        "label": 0}, "wic sentence1: The river bank. sentence2: The bank loaned money. word: bank",
     "False"),
    ("super_glue_multirc", {"paragraph": "<b>Sent 1: </b>Tom ran.<br><b>Sent 2: </b>He won.<br>",
                            "question": "Who won?", "answer": "Tom", "label": 1,
                            "idx": {"paragraph": 0, "question": 0, "answer": 0}},
     "multirc question: Who won? answer: Tom paragraph: Sent 1: Tom ran. Sent 2: He won. ", "True"),
    ("super_glue_record", {"passage": "Storm hits town.\n@highlight\nTrees fell\n@highlight\nNo one hurt",
                           "query": "@placeholder was hit.", "entities": ["town", "Trees"], "answers": ["town"],
                           "idx": {"passage": 0, "query": 0}},
     "record query: @placeholder was hit. entities: town, Trees passage: Storm hits town. Trees fell. No one hurt",
     "town"),
    ("super_glue_wsc", {"text": "Mark told Pete many lies about himself , which Pete included in his book .",
                        "span1_text": "Mark", "span1_index": 0, "span2_text": "his", "span2_index": 13, "label": 0},
     "wsc: Mark told Pete many lies about himself , which Pete included in *his* book .", "Mark"),
]


@pytest.mark.parametrize("name,example,inputs,targets", SUPER_GLUE_CASES)
def test_super_glue_formats(name, example, inputs, targets):
    assert get_task(name).format(example) == {"inputs": inputs, "targets": targets}


def test_record_passage_highlights():
    assert record_passage('He said "no"\n@highlight\nIt ended') == 'He said "no" It ended'


def test_wsc_marks_pronoun_with_punctuation_and_misplaced_index():
    ex = {"text": 'John laughed. "Good for him," he said.', "span2_text": "him", "span2_index": 4}
    assert wsc_marked_text(ex) == 'John laughed. "Good for *him* ," he said.'
    ex = {"text": "we might want to use it , but", "span2_text": "it", "span2_index": 4}  # index points at "use"
    assert wsc_marked_text(ex) == "we might want to use *it* , but"


def test_other_formats():
    squad = {"question": "Who's there?", "context": "Bob (the cat) is there.",
             "answers": {"text": ["Bob (the cat)", "Bob"], "answer_start": [0, 0]}}
    assert get_task("squad").format(squad) == {
        "inputs": "question: Who ' s there ? context: Bob ( the cat ) is there .", "targets": "Bob ( the cat )"}
    assert pad_punctuation("U.S.-based, 5%") == "U . S . - based , 5 %"
    cnn = {"article": "The cat sat on the mat all day.", "highlights": "Cat sits .\nMat used ."}
    assert get_task("cnn_dailymail").format(cnn) == {"inputs": "summarize: The cat sat on the mat all day.",
                                                     "targets": "Cat sits .\nMat used ."}
    for name, lang, word, target in [("wmt14_ende", "German", "de", "Das ist gut."),
                                     ("wmt14_enfr", "French", "fr", "C'est bon."),
                                     ("wmt16_enro", "Romanian", "ro", "Este bine.")]:
        assert get_task(name).format({"en": "That is good.", word: target}) == {
            "inputs": f"translate English to {lang}: That is good.", "targets": target}


def test_builtin_formats():
    kind = get_task("builtin_kind").format({"docstring": "Return the sum.", "label": 2})
    assert kind == {"inputs": "kind docstring: Return the sum.", "targets": "function"}
    name = get_task("builtin_name").format({"docstring": "Return the sum.", "name": "fsum"})
    assert name == {"inputs": "name docstring: Return the sum.", "targets": "fsum"}
    summary = get_task("builtin_summary").format({"body": "Uses exact floats.", "summary": "Return the sum."})
    assert summary == {"inputs": "summarize: Uses exact floats.", "targets": "Return the sum."}


@pytest.mark.parametrize("name,prediction,value", [
    ("glue_rte", "not_entailment", 1), ("glue_rte", " entailment ", 0), ("glue_rte", "Entailment", -1),
    ("glue_rte", "", -1), ("glue_sst2", "positive", 1), ("glue_sst2", "neutral", -1),
    ("glue_mnli", "neutral", 1), ("super_glue_cb", "neutral", 2), ("super_glue_boolq", "True", 1),
    ("super_glue_boolq", "true", -1), ("glue_stsb", "3.4", 3.4), ("glue_stsb", "three", -1.0),
    ("glue_stsb", "", -1.0), ("glue_stsb", "nan", -1.0), ("squad", " Paris ", "Paris"),
])
def test_postprocessors(name, prediction, value):
    assert get_task(name).postprocess(prediction, {}) == value


@pytest.mark.parametrize("prediction,expected", [  # "" and "the": -1, as T5's wsc_simple (issue #14; was 0)
    ("Mark", 1), ("the Mark", 1), ("mark", 1), ("Pete", 0), ("", -1), ("the", -1), ("Mark's book", 0)])
def test_wsc_postprocessor_matches_referent(prediction, expected):
    assert get_task("super_glue_wsc").postprocess(prediction, {"span1_text": "Mark"}) == expected
