"""Batched decoding, the prefix KV cache and grammar-constrained decoding on a tiny random Llama.

The tiny model (tests/test_workflow.py's builder: 2 layers, hidden 64, a byte-level BPE
vocabulary) goes through the real HFBackend and Decoder code; its text is noise, so the tests
check what must hold for any model: batching and prefix reuse give exactly the text of one
prompt at a time and of transformers' own generate(); a grammar's output always parses.
"""

import json

import pytest

from agents.expert.preferences import QUANTITIES, STRUCTURE_FIELDS, STRUCTURE_SCHEMA
from agents.llm.decoding import MIN_REUSE, _common_prefix, repeated_lines
from agents.llm.grammar import ChoiceList, JsonSchema, matches
from agents.llm.llm import HFBackend
from agents.llm.preference_extraction import PHRASINGS
from test_workflow import build_tiny_llama

SCHEMA = JsonSchema(STRUCTURE_SCHEMA)
SHARED = "Answer with one short line of Python. " * 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return HFBackend(build_tiny_llama(tmp_path_factory.mktemp("tiny")), device="cpu", seed=0)


# ---- grammars ------------------------------------------------------------------------------
def test_json_schema_grammar_accepts_exactly_the_schema():
    assert SCHEMA.forced(SCHEMA.start()) == '{"quantity":'
    battery = '{"quantity": "battery_energy", "sense": "at_least", "bound": 5, "unit": "'
    assert SCHEMA.allows(battery + 'percent"') and not SCHEMA.allows(battery + 'kW"')   # anyOf: energy units
    assert not SCHEMA.allows(battery.replace("battery_energy", "grid_import") + 'percent')
    whole_day = battery + 'kWh", "from": null, "to": null, "applies": "'
    assert SCHEMA.forced(matches(SCHEMA, whole_day)) == 'inside"}' and not SCHEMA.allows(whole_day + "o")
    assert SCHEMA.forced(matches(SCHEMA, '{"quantity": "gen')) == 'erator_power", "sense":'
    assert SCHEMA.forced(matches(SCHEMA, '{"quantity": "')) == ""  # the value is the model's choice
    rows = json.loads(PHRASINGS.read_text())["phrasings"]
    for r in rows:  # every ground truth of the benchmark is a sentence of the grammar
        assert SCHEMA.parse(json.dumps(r["expected"])) == r["expected"], r["text"]
    good = json.dumps(rows[0]["expected"])
    assert SCHEMA.allows(good[:17]) and not SCHEMA.parse(good[:-1])
    assert not SCHEMA.allows(good.replace('"sense"', '"Sense"'))          # keys are fixed
    assert not SCHEMA.allows(good.replace("at_most", "at_mist"))           # enums are closed
    assert not SCHEMA.allows(good.replace('"bound": 0', '"bound": -1'))    # minimum 0
    assert not SCHEMA.allows(good.replace('"bound": 0', '"bound": 01'))    # JSON numbers only
    assert not SCHEMA.allows(good.replace('"22:30"', '"22:31"'))           # quarter hours
    assert not SCHEMA.allows(good.replace(", ", ","))                      # json.dumps separators
    assert SCHEMA.final(matches(SCHEMA, good)) and not SCHEMA.allows(good + " ")
    number = battery[: battery.index('"bound": ') + 9]
    assert SCHEMA.allows(number + "1234567890.1") and SCHEMA.allows(number + "12345678901")
    assert not SCHEMA.allows(number + "12345678901.")  # a prefix nothing can complete is refused (a dead end)
    with pytest.raises(ValueError, match="only enum"):
        JsonSchema({"type": "object", "properties": {"x": {"type": "string"}}})


def test_choice_list_grammar_as_a_state_machine():
    g = ChoiceList(("sum", "multiply"), max_items=2)
    assert matches(g, "sum, mul") == "sum, mul" and matches(g, "sum, sum") is None
    assert g.complete("sum, multiply") and not g.complete("sum, sum")


def test_helpers():
    assert _common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2 and _common_prefix([(5,), ()]) == 0
    assert repeated_lines("x = 1\n" * 3) and not repeated_lines("x = 1\ny = 2\nz = 3\n")


# ---- decoding ------------------------------------------------------------------------------
def test_batch_and_prefix_cache_give_the_single_prompt_text(tiny):
    import torch

    prompts = [SHARED + "Add two numbers.", SHARED + "Multiply x by 3 and return it.", SHARED + "Sort a list."]
    single = [tiny.generate(p, max_new_tokens=12) for p in prompts]
    before = tiny.decoder.stats["reused_tokens"]
    batch = tiny.generate_batch(prompts, max_new_tokens=12)
    assert batch == single
    assert tiny.decoder.stats["reused_tokens"] > before  # the shared prefix came from the cache
    ids = tiny.tokenizer(tiny.render(prompts[1]), return_tensors="pt", add_special_tokens=False).input_ids
    out = tiny.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                              pad_token_id=tiny.tokenizer.eos_token_id)
    assert tiny.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == single[1]
    tiny.decoder.reuse_prefix = False
    try:
        assert tiny.generate_batch(prompts, max_new_tokens=12, batch_size=2) == single
    finally:
        tiny.decoder.reuse_prefix = True


def test_row_prefill_gives_the_padded_batch_text_and_prefills_only_what_neighbours_do_not_share(tiny):
    prompts = [SHARED + "Sort a list.", SHARED + "Add two numbers.", "Print hello.", SHARED + "Add two numbers and 3."]
    ids = [tiny._encode(tiny.render(p), 12) for p in prompts]
    dec = tiny.decoder
    dec.prefix_ids, dec.prefix_cache, dec.row_prefill = (), None, True
    before = dict(dec.stats)
    rows = tiny.generate_batch(prompts, max_new_tokens=12)
    filled = dec.stats["prefill_tokens"] - before["prefill_tokens"]
    order = sorted(ids)  # each prompt pays for what it does not share with the one prefilled before it
    shared = [min(_common_prefix([a, b]), len(b) - 1) for a, b in zip(order, order[1:])]
    expected = len(order[0]) + sum(len(b) - (n if n >= MIN_REUSE else 0) for b, n in zip(order[1:], shared))
    assert filled == expected < sum(map(len, ids))
    assert dec.stats["reused_tokens"] - before["reused_tokens"] == sum(map(len, ids)) - expected
    dec.row_prefill = False
    try:
        assert tiny.generate_batch(prompts, max_new_tokens=12) == rows
        assert tiny.generate_batch(prompts, max_new_tokens=12, batch_size=3) == rows
    finally:
        dec.row_prefill = "auto"
    assert [tiny.generate(p, max_new_tokens=12) for p in prompts] == rows
    assert tiny.generate_batch(prompts[::-1], max_new_tokens=12) == rows[::-1]  # order in = order out


def test_auto_prefill_takes_rows_only_where_they_run_under_half_the_padded_positions(tiny):
    dec = tiny.decoder
    dec.prefix_ids, dec.prefix_cache = (), None
    head = list(range(100, 160))
    examples = [list(range(200 + 50 * k, 250 + 50 * k)) * 8 for k in range(2)]  # 400 tokens each
    blocks = [head + examples[k % 2] + [7 + k] * (5 + 10 * k) for k in range(8)]  # four prompts share each example
    assert dec._rows_pay(blocks)            # long own tails that pairs of prompts share: rows
    short = [head + [7 + k] * (3 + k) for k in range(8)]
    assert not dec._rows_pay(short)         # one long shared prefix, short own tails: the padded batch
    assert not dec._rows_pay(blocks[:1])    # one prompt: the same positions either way


def test_stacked_row_caches_continue_each_prompt_as_the_model_alone_would(tiny):
    import torch

    prompts = [SHARED + "Sort a list.", SHARED + "Add two numbers and 3.", "Print hello."]
    ids = [tiny._encode(tiny.render(p), 4) for p in prompts]
    dec = tiny.decoder
    dec.row_prefill = True
    try:
        with torch.no_grad():
            logits, cache, attn, pos = dec._prefill(ids, room=4)
    finally:
        dec.row_prefill = "auto"
    with torch.no_grad():
        nxt = logits.argmax(-1)
        inp, new = dec._block([[int(t)] for t in nxt])
        step, _ = dec._forward(inp, torch.cat([attn, new], dim=1), pos + new.cumsum(1), cache)
        for r, row in enumerate(ids):  # the same two steps of one prompt, no cache, no padding
            full = tiny.model(input_ids=torch.tensor([row + [int(nxt[r])]])).logits[0].float()
            assert torch.allclose(logits[r], full[-2], atol=1e-5) and torch.allclose(step[r, -1], full[-1], atol=1e-5)


def test_room_layer_behaves_like_the_stock_dynamic_layer():
    import torch
    from transformers.cache_utils import DynamicLayer

    from agents.llm.decoding import _room_layer

    g = torch.Generator().manual_seed(0)
    first = torch.randn(3, 2, 5, 4, generator=g)
    room = torch.zeros(3, 2, 7, 4)
    room[..., :5, :] = first
    layer, stock = _room_layer(room, room.clone(), 5), DynamicLayer()
    stock.update(first, first.clone())
    for new in (1, 2, 3):  # 5 + 6 > 7 positions: the buffers grow once
        k = torch.randn(3, 2, new, 4, generator=g)
        for a, b in zip(layer.update(k, -k), stock.update(k, -k)):
            assert torch.equal(a, b)
    assert layer.get_seq_length() == stock.get_seq_length() == 11
    idx = torch.tensor([2, 0])
    layer.batch_select_indices(idx)
    stock.batch_select_indices(idx)
    layer.crop(-3)
    stock.crop(-3)
    k = torch.randn(2, 2, 1, 4, generator=g)
    assert all(torch.equal(a, b) for a, b in zip(layer.update(k, k), stock.update(k, k)))
    with pytest.raises(ValueError, match="negative"):
        layer.crop(2)


def test_stop_strings_cut_the_text(tiny):
    free = tiny.generate("Say something.", max_new_tokens=20)
    if len(free) > 3:
        stop = free[2:4]
        assert tiny.generate("Say something.", max_new_tokens=20, stop=[stop]) == free.split(stop, 1)[0]


@pytest.mark.parametrize("variant", ["joint", "fields"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_decoding_always_parses(tiny, temperature, variant):
    """Whatever a (random) model writes under the grammar parses: the whole structure in one reply
    ('joint'), or each of the three answers of 'fields' under its own cut of the schema, which
    together form a structure of the full schema (units fit the quantity read first)."""
    from agents.llm import preference_extraction as X

    tiny.temperature = temperature
    before = dict(tiny.decoder.stats)
    try:
        texts = ["keep the genset off 11pm to 7am", "our fuse allows 30 kW of import", "no spilling of solar"]
        structures, raws = X.extract(tiny, texts, variant=variant)
    finally:
        tiny.temperature = 0.0
    steps, tokens = (tiny.decoder.stats[k] - before[k] for k in ("decode_steps", "tokens_out"))
    calls = 1 if variant == "joint" else 5  # fields: what, amount (battery / power units), when, scope
    assert steps < calls * tokens / len(texts) / 2  # forced JSON text is fed without a step of its own
    for s, raw in zip(structures, raws):
        if variant == "joint":
            assert SCHEMA.parse(raw) == s
        else:
            parts = [json.loads(part) for part in raw.split("\n")]
            parts[-1] = {"applies": "outside" if parts[-1][X.SCOPE_KEY] else "inside"}  # the yes/no scope answer
            assert len(parts) == len(X.FIELD_GROUPS) and {k: v for part in parts for k, v in part.items()} == s
            assert X.JsonSchema(X._field_schema("amount", s["quantity"])).parse(json.dumps(parts[1])) is not None
            assert SCHEMA.parse(json.dumps(s)) == s
        assert list(s) == list(STRUCTURE_FIELDS)
        assert s["quantity"] in QUANTITIES and s["bound"] >= 0
        assert s["applies"] == "inside" or s["from"] or s["to"]  # cross-field rule of the anyOf schema


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_choices_variant_always_gives_a_structure_of_the_schema(tiny, temperature):
    """The 'choices' variant on a random model: whatever kind, options and fallbacks it picks, the
    answers assemble into a structure of the full schema (an 'only' kind gets power quantities)."""
    from agents.llm import preference_extraction as X

    tiny.temperature = temperature
    try:
        texts = ["keep the genset off 11pm to 7am", "our fuse allows 30 kW of import", "no spilling of solar",
                 "the dryer may only run after 9 pm", "battery at least half full before 6", "charge the car just at night"]
        structures, raws = X.extract(tiny, texts, variant="choices")
    finally:
        tiny.temperature = 0.0
    for s, raw in zip(structures, raws):
        assert s is not None and SCHEMA.parse(json.dumps(s)) == s and list(s) == list(STRUCTURE_FIELDS)
        assert json.loads(raw.split("\n")[0])["kind"] in X.KINDS


def test_each_prompt_of_a_batch_decodes_under_its_own_grammar(tiny):
    """One grammar per prompt (choice questions whose options differ per wording): every reply is
    one of its own prompt's options, the same as decoding that prompt alone."""
    options = [["before 18:00", "after 18:00"], ["all day", "from 09:00 to 15:00", "another window"], ["0 kW"]]
    grammars = [JsonSchema({"type": "object", "properties": {"window": {"enum": o}}}) for o in options]
    prompts = [SHARED + f"Question {k}." for k in range(len(options))]
    for temperature in (0.0, 1.0):
        tiny.temperature = temperature
        try:
            batch = tiny.generate_batch(prompts, max_new_tokens=40, grammar=grammars)
            alone = [tiny.generate(p, max_new_tokens=40, grammar=g) for p, g in zip(prompts, grammars)]
        finally:
            tiny.temperature = 0.0
        assert [json.loads(r)["window"] in o for r, o in zip(batch, options)] == [True] * 3
        if temperature == 0.0:
            assert batch == alone
    with pytest.raises(ValueError, match="2 grammars for 3 prompts"):
        tiny.generate_batch(prompts, max_new_tokens=8, grammar=grammars[:2])


def test_choice_list_decoding_names_only_known_atoms(tiny):
    g = ChoiceList(("sum", "multiply", "cumsum", "maximum"), max_items=3)
    out = tiny.generate("Name cvxpy atoms:", max_new_tokens=16, grammar=g)
    assert out and g.complete(out.strip()) or g.allows(out)


def test_chat_turns_render_as_earlier_messages_and_key_stably(tiny):
    """A prompt given as chat turns (few-shot examples as user/assistant turns) renders through the
    chat template after the system message; a plain string is the single-user-turn case; recorded
    replies key list prompts stably."""
    from agents.llm.llm import prompt_key

    turns = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
             {"role": "user", "content": "Q2"}]
    text = tiny.render(turns, system="S")
    assert text.index("system\nS") < text.index("user\nQ1") < text.index("assistant\nA1") < text.index("user\nQ2")
    assert tiny.render("Q2", system="S") == tiny.render(turns[-1:], system="S")
    assert prompt_key(turns, "S") == prompt_key([dict(t) for t in turns], "S") != prompt_key("Q2", "S")
    assert tiny.generate(turns, system="S", max_new_tokens=4) == tiny.generate_batch([turns], system="S",
                                                                                    max_new_tokens=4)[0]


def test_auto_dtype_computes_bf16_weights_in_float32_on_the_cpu(tmp_path):
    """The packaged models' folders hold bf16 weights; on the CPU 'auto' computes in float32 (bf16
    compute on cores without native bf16 is ~100x slower), an explicit dtype is kept."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = build_tiny_llama(tmp_path / "tiny")
    AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).save_pretrained(folder)
    assert HFBackend(folder, device="cpu").model.dtype == torch.float32
    assert HFBackend(folder, device="cpu", dtype="bfloat16").model.dtype == torch.bfloat16


def test_prefill_benchmark_counts_the_positions_a_padded_batch_runs():
    from agents.llm.bench_prefill import fleet_prompts, padded_positions

    ids = [[1] * 20 + [2, 3], [1] * 20 + [4], [9] * 5]
    assert padded_positions(ids, 2) == (19 + 2 * 3 + 5, 1)  # a 19-token prefix once, one pad; a lone short row
    assert padded_positions(ids, 1) == (22 + 21 + 5, 0)
    prompts = fleet_prompts()
    assert len(prompts) == 67 and all("Units:" in p for p in prompts)  # the default fleet's first-round blocks
