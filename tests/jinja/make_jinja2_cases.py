#!/usr/bin/env python3
"""Writes jinja2_cases.json: small templates and what jinja2 renders for them.

The C++ engine must match jinja2 on each case (tests/jinja/parity_test.cc). The environment is the one
transformers' apply_chat_template uses (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now at a fixed instant).

Each case: name, template, vars (passed to render, as JSON), and either "expected" (the text) or
"error" (jinja2 raised; "message" is str(exception), compared exactly only for raise_exception).

Usage: python3 make_jinja2_cases.py   (needs jinja2 3.1; rewrites jinja2_cases.json beside this file)
"""

import datetime
import json
import os

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2025, 3, 9, 14, 5, 0)


class GenerationTag(Extension):
    """{% generation %}...{% endgeneration %}: renders its body (transformers' AssistantTracker)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: FIXED_NOW.strftime(fmt)
    return env


MSGS = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]

# (name, template, vars)
CASES = [
    # --- whitespace control, trim_blocks, lstrip_blocks, comments, raw ---
    ("ws_trim_blocks", "{% if true %}\nA\n{% endif %}\nB", {}),
    ("ws_lstrip_blocks", "x\n    {% if true %}\n    A\n    {% endif %}\ny", {}),
    ("ws_lstrip_not_for_print", "x\n    {{ 1 }}\n", {}),
    ("ws_minus_both", "a   {%- if true -%}   b   {%- endif -%}   c", {}),
    ("ws_minus_print", "a \n {{- 'x' -}} \n b", {}),
    ("ws_plus_disables_lstrip", "x\n    {%+ if true %}A{% endif %}", {}),
    ("ws_plus_disables_trim", "{% if true +%}\nA{% endif %}", {}),
    ("ws_comment", "a {# note #} b\n  {# own line #}\nc", {}),
    ("ws_comment_minus", "a  {#- x -#}  b", {}),
    ("ws_raw", "{% raw %}{{ not evaluated }}{% endraw %}!", {}),
    ("ws_trailing_newline_dropped", "A\n", {}),
    ("ws_crlf", "A\r\nB\r\n{% if true %}\r\nC\r\n{% endif %}\r\n", {}),
    ("ws_tag_inside_text_line", "x {% if true %}y{% endif %} z", {}),
    ("ws_unicode_text", "héllo {{ '—' }} 世界", {}),
    # --- literals and printing ---
    ("print_none_bool", "{{ none }} {{ true }} {{ false }} {{ None }} {{ True }}", {}),
    ("print_numbers", "{{ 1 }} {{ 1.0 }} {{ 1.5e3 }} {{ 0.1 }} {{ 1e16 }} {{ 1e-5 }} {{ -0.0 }} {{ 1_000 }}", {}),
    ("print_int_forms", "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 0 }} {{ 1_000_000 }}", {}),
    ("print_list_repr", "{{ [1, 'a', \"it's\", none, true, 1.5] }}", {}),
    ("print_tuple_repr", "{{ (1,) }} {{ (1, 2) }} {{ () }}", {}),
    ("print_dict_repr", "{{ {'k': 'v', 'n': [1, {'x': none}]} }}", {}),
    ("print_repr_escapes", "{{ ['a\\nb', 'tab\\t', 'q\"', \"both'\\\"\", '\\\\'] }}", {}),
    ("print_repr_unicode", "{{ ['é', '\\u00a0', '\\u200d', '\\x07', '🌍'] }}", {}),
    ("print_string_escapes", "{{ 'a\\tb\\u00e9\\x41\\101\\q\\U0001F600' }}", {}),
    ("string_bad_escape_errors", "{{ '\\N' }}", {}),
    ("print_adjacent_strings", "{{ 'a' 'b' \"c\" }}", {}),
    ("print_tuple_statement", "{{ 1, 2 }}", {}),
    ("print_input_values", "{{ s }} {{ n }} {{ f }} {{ b }} {{ z }} {{ l }} {{ d }}",
     {"s": "str", "n": 3, "f": 2.0, "b": True, "z": None, "l": [1, "x"], "d": {"a": [True]}}),
    # --- arithmetic and operators ---
    ("op_arith", "{{ 7 + 2 }} {{ 7 - 2 }} {{ 7 * 2 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }}", {}),
    ("op_floor_mod_negative", "{{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7.5 // 2 }} {{ -5 % 3.0 }}", {}),
    ("op_true_div_float", "{{ 4 / 2 }} {{ 1 / 3 }} {{ 2 ** -1 }} {{ 2.0 ** 2 }}", {}),
    ("op_pow_left_assoc", "{{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}", {}),
    ("op_bool_arith", "{{ true + 1 }} {{ true * 3 }}", {}),
    ("op_concat_tilde", "{{ 'a' ~ 1 ~ none ~ true ~ [1] }}", {}),
    ("op_concat_undefined", "[{{ u ~ 'x' }}]", {}),
    ("op_string_plus", "{{ 'a' + 'b' }}", {}),
    ("op_string_repeat", "{{ 'ab' * 3 }}{{ 2 * 'c' }}{{ 'x' * 0 }}|{{ [1, 2] * 2 }}", {}),
    ("op_list_plus", "{{ [1] + [2, 3] }} {{ (1,) + (2,) }}", {}),
    ("op_precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 * 3 ~ 4 }} {{ 10 - 2 - 3 }} {{ 'a' ~ (1 + 2) }}", {}),
    ("op_plus_binds_looser_than_tilde_errors", "{{ 1 + 2 ~ 3 }}", {}),
    ("op_unary", "{{ -3 }} {{ +3 }} {{ - -3 }} {{ -(1 + 2) }} {{ -1|abs }}", {}),
    ("op_filter_binds_tighter", "{{ 'a' + ' b '|trim + 'c' }}", {}),
    ("op_compare", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ 1 != 2 }}", {}),
    ("op_compare_chain", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1 == 1 }}", {}),
    ("op_equality_types", "{{ 1 == true }} {{ [1] == [1] }} {{ {'a': 1} == {'a': 1} }} {{ 'a' == 1 }} {{ none == none }}", {}),
    ("op_in", "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 'x' in u }}", {}),
    ("op_and_or_values", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' or [] }} {{ none and 1 }} {{ not 0 }} {{ not 'a' }}", {}),
    ("op_not_precedence", "{{ not 1 == 2 }} {{ not true and false }}", {}),
    ("op_conditional", "{{ 'y' if 1 else 'n' }} {{ 'y' if 0 else 'n' }} [{{ 'y' if 0 }}] {{ 1 if 0 else 2 if 0 else 3 }}", {}),
    # --- variables, attributes, items, slices ---
    ("attr_and_item", "{{ d.a }} {{ d['a'] }} {{ d.b.c }} {{ d['b']['c'] }} {{ l[0] }} {{ l.1 }}",
     {"d": {"a": 1, "b": {"c": 2}}, "l": [10, 20]}),
    ("attr_missing_is_undefined", "[{{ d.x }}] [{{ d['x'] }}] [{{ l[5] }}] [{{ s.x }}]", {"d": {}, "l": [], "s": "str"}),
    ("attr_method_shadows_key", "{{ d['items'] }} {{ d.items()|list }}", {"d": {"items": 7}}),
    ("attr_of_undefined_errors", "{{ u.x }}", {}),
    ("attr_of_none_undefined", "[{{ n.x }}]", {"n": None}),
    ("index_negative", "{{ l[-1] }} {{ s[-1] }} {{ s[0] }}", {"l": [1, 2, 3], "s": "héllo"}),
    ("slice_list", "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[5:] }} {{ l[1:2] }}",
     {"l": [1, 2, 3, 4]}),
    ("slice_string", "{{ s[1:] }}|{{ s[:-1] }}|{{ s[::-1] }}|{{ s[1:3] }}|{{ s[10:] }}", {"s": "héllo"}),
    ("slice_negative_step_bounds", "{{ l[3:0:-1] }} {{ l[-1:-3:-1] }} {{ l[:1:-1] }}", {"l": [0, 1, 2, 3, 4]}),
    ("slice_tuple", "{{ (1, 2, 3)[1:] }}", {}),
    ("slice_step_zero", "{{ [1][::0] }}", {}),
    # --- undefined ---
    ("undef_print_empty", "[{{ u }}]", {}),
    ("undef_falsy", "{% if u %}t{% else %}f{% endif %}{% if not u %}!{% endif %}", {}),
    ("undef_iterates_empty", "{% for x in u %}x{% else %}empty{% endfor %}", {}),
    ("undef_tests", "{{ u is defined }} {{ u is undefined }} {{ u is none }} {{ u is string }} {{ u is iterable }}", {}),
    ("undef_length_default", "{{ u|length }} {{ u|default('d') }} {{ u|list }} {{ u|string }}|{{ u|trim }}|", {}),
    ("undef_equality", "{{ u == u }} {{ u == none }} {{ u != 1 }}", {}),
    ("undef_arith_errors", "{{ u + 1 }}", {}),
    ("undef_call_errors", "{{ u() }}", {}),
    ("undef_item_errors", "{{ u[0] }}", {}),
    ("undef_tojson_errors", "{{ u|tojson }}", {}),
    ("undef_compare_errors", "{{ u < 1 }}", {}),
    # --- if / for / loop ---
    ("if_elif_else", "{% for i in [1, 2, 3] %}{% if i == 1 %}a{% elif i == 2 %}b{% else %}c{% endif %}{% endfor %}", {}),
    ("for_loop_vars",
     "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
     "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {}),
    ("for_prev_next", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}", {}),
    ("for_cycle", "{% for x in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}", {}),
    ("for_filtered", "{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }}{% if loop.last %}!{% endif %} {% endfor %}", {}),
    ("for_else", "{% for x in [] %}x{% else %}none{% endfor %}|{% for x in [0] if x %}x{% else %}filtered{% endfor %}", {}),
    ("for_unpack_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("for_unpack_parens", "{% for (a, b) in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %}", {}),
    ("for_dict_keys", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"x": 1, "y": 2}}),
    ("for_string_chars", "{% for c in 'hé' %}[{{ c }}]{% endfor %}", {}),
    ("for_nested_loop_var", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("for_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("for_over_none_errors", "{% for x in n %}{% endfor %}", {"n": None}),
    ("for_unpack_mismatch_errors", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("for_loop_scope", "{% set y = 5 %}{% for i in [1, 2] %}{% if loop.first %}{% set y = 1 %}{% endif %}[{{ y }}]{% endfor %}{{ y }}", {}),
    ("for_loop_var_reassign", "{% for t in [{'f': 1}, {'f': 2}] %}{% set t = t.f %}{{ t }}{% endfor %}", {}),
    ("if_set_leaks", "{% if true %}{% set x = 1 %}{% endif %}{{ x }}", {}),
    # --- set, namespace, with ---
    ("set_simple", "{% set x = 1 + 1 %}{{ x }}{% set a, b = 1, 2 %}{{ a }}{{ b }}", {}),
    ("set_block", "{% set x %}a{{ 1 }}\n{% endset %}[{{ x }}]", {}),
    ("set_block_filter", "{% set x | upper %}abc{% endset %}{{ x }}", {}),
    ("set_overrides_context", "{{ v }}{% set v = 2 %}{{ v }}", {"v": 1}),
    ("namespace_basic", "{% set ns = namespace(a=1, b='x') %}{% set ns.a = ns.a + 1 %}{{ ns.a }}{{ ns.b }}{{ ns['a'] }}", {}),
    ("namespace_in_loop", "{% set ns = namespace(found=false) %}{% for x in [1, 2] %}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}", {}),
    ("namespace_empty_then_set", "{% set ns = namespace() %}{% set ns.index = 0 %}{{ ns.index }}", {}),
    ("namespace_repr", "{{ namespace(a=1) }}", {}),
    ("namespace_from_dict", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}", {}),
    ("set_attr_non_namespace_errors", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("with_block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", {}),
    ("filter_block", "{% filter upper %}abc{{ 'd' }}{% endfilter %}", {}),
    # --- macros ---
    ("macro_basic", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}", {}),
    ("macro_missing_arg_undefined", "{% macro m(a, b) %}[{{ a }}|{{ b }}]{% endmacro %}{{ m(1) }}", {}),
    ("macro_recursive", "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(4) }}", {}),
    ("macro_sees_globals_at_call", "{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}", {}),
    ("macro_default_uses_param", "{% macro m(a, b=a * 2) %}{{ b }}{% endmacro %}{{ m(3) }}", {}),
    ("macro_too_many_args_errors", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}),
    ("macro_unknown_kwarg_errors", "{% macro m(a) %}{% endmacro %}{{ m(z=1) }}", {}),
    ("macro_output_trimmed", "{% macro m() %}\n  {{- 'x' }}\n{% endmacro %}[{{ m() }}]", {}),
    # --- tests ---
    ("tests_types", "{{ 1 is number }}{{ 1.5 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}"
     "{{ 1.5 is float }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is mapping }}{{ [] is iterable }}"
     "{{ 'a' is iterable }}{{ 1 is iterable }}{{ 'a' is sequence }}{{ {} is sequence }}{{ true is boolean }}"
     "{{ none is none }}{{ 0 is none }}", {}),
    ("tests_true_false", "{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}", {}),
    ("tests_numbers", "{{ 3 is odd }}{{ 4 is even }}{{ 3.0 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}", {}),
    ("tests_compare", "{{ 1 is eq 1 }}{{ 1 is equalto(2) }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is le 2 }}{{ 3 is gt 2 }}{{ 3 is ge 4 }}{{ 2 is greaterthan 1 }}", {}),
    ("tests_in_sameas", "{{ 1 is in [1, 2] }}{{ none is sameas none }}{{ false is sameas false }}", {}),
    ("tests_case", "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 'aB' is lower }}", {}),
    ("tests_callable", "{{ range is callable }}{{ 1 is callable }}{% macro m() %}{% endmacro %}{{ m is callable }}", {}),
    ("tests_negated", "{{ 1 is not string }}{{ none is not none }}", {}),
    ("tests_filter_test_exist", "{{ 'upper' is filter }}{{ 'nope' is filter }}{{ 'odd' is test }}", {}),
    # --- filters ---
    ("f_trim", "[{{ '  a b \\n'|trim }}] [{{ 'xxaxx'|trim('x') }}] [{{ none|trim }}]", {}),
    ("f_case", "{{ 'hello wORLD'|upper }} {{ 'HeLLo'|lower }} {{ 'hello wORLD'|capitalize }} {{ 'hello-world foo(bar'|title }}", {}),
    ("f_case_unicode", "{{ 'éàü Ωя'|upper }} {{ 'ÉÀÜ ΩЯ'|lower }}", {}),
    ("f_length", "{{ 'héllo'|length }} {{ [1, 2]|length }} {{ {'a': 1}|count }}", {}),
    ("f_first_last", "{{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }}{{ 'abc'|first }}{{ 'abc'|last }}{{ {'a': 1, 'b': 2}|first }}[{{ []|first }}]", {}),
    ("f_join", "{{ [1, 2, 3]|join(', ') }} {{ ['a', 'b']|join }} {{ [{'n': 'x'}, {'n': 'y'}]|join('-', attribute='n') }}", {}),
    ("f_default", "{{ u|default('d') }} {{ none|default('d') }} {{ ''|default('d', true) }} {{ 0|d('z', boolean=true) }} {{ 'v'|default('d') }}", {}),
    ("f_list", "{{ 'ab'|list }} {{ {'a': 1}|list }} {{ (1, 2)|list }}", {}),
    ("f_items", "{{ d|items|list }} {% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", {"d": {"x": 1, "y": [2]}}),
    ("f_items_error", "{{ [1]|items|list }}", {}),
    ("f_string", "{{ 1|string ~ none|string ~ [1]|string }}", {}),
    ("f_int_float", "{{ '42'|int }} {{ ' 7 '|int }} {{ '3.7'|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ 3.9|int }} {{ '0x1A'|int(base=16) }} "
     "{{ '1.5'|float }} {{ 'x'|float }} {{ 2|float }} {{ '1e3'|int }} {{ none|int }}", {}),
    ("f_abs_round", "{{ -3|abs }} {{ -2.5|abs }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 3|round }} {{ 1234|round(-2) }} "
     "{{ 2.1|round(0, 'ceil') }} {{ 2.9|round(method='floor') }}", {}),
    ("f_replace", "{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }} {{ 1|replace(1, 2) }}", {}),
    ("f_indent", "[{{ 'a\\nb\\n\\nc'|indent }}] [{{ 'a\\nb'|indent(2, first=true) }}] [{{ 'a\\n\\nb'|indent(2, blank=true) }}] [{{ 'a\\r\\nb\\n'|indent('> ') }}]", {}),
    ("f_tojson", "{{ d|tojson }}", {"d": {"b": [1, 2.5, None, True], "a": "é\"\\\n\t\u2028<>&'", "c": {}}}),
    ("f_tojson_indent", "{{ d|tojson(indent=2) }}|{{ []|tojson(indent=2) }}|{{ {'a': []}|tojson(indent=0) }}", {"d": {"k": [1, {"x": "y"}], "e": {}}}),
    ("f_tojson_options", "{{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(',', ':')) }} {{ 'é'|tojson(ensure_ascii=true) }} {{ '🌍'|tojson(true) }}",
     {"d": {"b": 1, "a": 2}}),
    ("f_tojson_scalars", "{{ 1|tojson }} {{ 1.0|tojson }} {{ 'x'|tojson }} {{ none|tojson }} {{ (1, 2)|tojson }} {{ {1: 2, true: 3, none: 4}|tojson }}", {}),
    ("f_select_reject", "{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ [0, 1, '', 'a']|select|list }} "
     "{{ [1, 2, 3]|select('>', 1)|list }} {{ ['a', 'b']|reject('equalto', 'a')|list }} {{ [1, 5]|select('in', [5])|list }}", {}),
    ("f_selectattr", "{{ m|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ m|rejectattr('role', 'eq', 'user')|list|length }} "
     "{{ m|selectattr('content')|list|length }}", {"messages": MSGS, "m": MSGS}),
    ("f_map", "{{ [1, -2]|map('abs')|list }} {{ ['a', 'b']|map('upper')|join }} {{ m|map(attribute='role')|join(',') }} "
     "{{ [{'a': 1}, {}]|map(attribute='a', default=0)|list }} {{ [[1, 2]]|map(attribute='1')|list }}", {"m": MSGS}),
    ("f_sort_unique", "{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a']|sort }} {{ ['b', 'A', 'a']|sort(case_sensitive=true) }} {{ [3, 1]|sort(reverse=true) }} "
     "{{ [{'n': 2}, {'n': 1}]|sort(attribute='n')|map(attribute='n')|list }} {{ ['b', 'A', 'a', 'b']|unique|list }}", {}),
    ("f_dictsort", "{{ {'b': 1, 'A': 2, 'c': 0}|dictsort }} {{ {'b': 1, 'a': 2}|dictsort(by='value') }} {{ {'b': 1, 'a': 2}|dictsort(reverse=true) }}", {}),
    ("f_min_max_sum", "{{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }} {{ ['a', 'B']|max }} {{ [1, 2.5]|sum }} {{ [{'x': 2}, {'x': 3}]|sum(attribute='x') }} {{ [1]|sum(start=10) }}", {}),
    ("f_reverse", "{{ 'héllo'|reverse }} {{ [1, 2, 3]|reverse|list }}", {}),
    ("f_escape_safe", "{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|safe }}", {}),
    ("f_format", "{{ '%s-%d'|format('a', 3) }} {{ '%(x)s'|format(x='k') }}", {}),
    ("f_wordcount", "{{ 'Hello big world, again'|wordcount }}", {}),
    ("f_unknown_errors", "{{ 1|nosuchfilter }}", {}),
    ("f_attr", "[{{ d|attr('k') }}] {{ d|attr('items') is callable }}", {"d": {"k": "v"}}),
    # --- string methods ---
    ("m_strip", "[{{ s.strip() }}] [{{ s.lstrip() }}] [{{ s.rstrip() }}] [{{ 'xxaxx'.strip('x') }}] [{{ '\\n\\nab\\n'.strip('\\n') }}]",
     {"s": "  \t pad \n "}),
    ("m_split", "{{ 'a,b,,c'.split(',') }} {{ '  a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split() }} {{ ''.split(',') }}", {}),
    ("m_split_think", "{{ s.split('</think>')[-1] }}|{{ s.split('</think>')[0] }}", {"s": "<think>r</think>answer"}),
    ("m_splitlines", "{{ 'a\\nb\\r\\nc\\n'.splitlines() }} {{ 'a\\nb'.splitlines(true) }}", {}),
    ("m_startswith", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'a'.endswith('abc') }}", {}),
    ("m_case", "{{ 'ab Cd'.upper() }} {{ 'AB cD'.lower() }} {{ 'they\\'re bill'.title() }} {{ 'hELLO'.capitalize() }} {{ 'aBc'.swapcase() }}", {}),
    ("m_replace_find", "{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '', 1) }} {{ 'héllo'.find('l') }} {{ 'abc'.find('z') }} {{ 'abab'.count('ab') }} {{ 'hello'.rfind('l') }}", {}),
    ("m_join", "{{ ', '.join(['a', 'b']) }} {{ ''.join('xyz') }}", {}),
    ("m_predicates", "{{ '123'.isdigit() }}{{ 'abc'.isalpha() }}{{ 'a1'.isalnum() }}{{ ' \\t'.isspace() }}{{ 'abc'.islower() }}{{ 'ABC'.isupper() }}{{ ''.isdigit() }}", {}),
    ("m_format", "{{ '{} and {}'.format(1, 'x') }} {{ '{0}{0}'.format('a') }} {{ '{name}!'.format(name='n') }} {{ '{{x}}'.format() }} "
     "{{ '{:>5}|{:<4}|{:^5}|{:05d}|{:.2f}|{:x}'.format('a', 'b', 'c', 42, 3.14159, 255) }}", {}),
    ("m_dict", "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }}", {"d": {"a": 1, "b": 2}}),
    ("m_list", "{{ [1, 2, 1].count(1) }} {{ ['a', 'b'].index('b') }}", {}),
    ("m_list_append_unsafe", "[{{ l.append }}]", {"l": [1]}),
    ("m_str_attr_missing", "[{{ 'abc'.nope }}] {{ 'abc'.nope is defined }}", {}),
    # --- % formatting ---
    ("pct_basic", "{{ '%s' % 'x' }} {{ '%s|%s' % (1, none) }} {{ '%d' % 3.9 }} {{ '%5.2f' % 3.14159 }} {{ '%-4s|' % 'ab' }} {{ '%x %X %o' % (255, 255, 8) }}", {}),
    ("pct_flags", "{{ '%05.1f|%+d|% d|%#o|%#x|%c|%%|%r' % (3.14159, 5, 7, 8, 255, 65, 'q') }}", {}),
    ("pct_mapping", "{{ '%(a)s-%(b)d' % {'a': 'x', 'b': 2} }}", {}),
    ("pct_single_list_arg", "{{ '%s' % [1, 2] }} {{ 'abc' % [] }} {{ 'abc' % {'a': 1} }}", {}),
    ("pct_too_many_errors", "{{ 'abc' % 5 }}", {}),
    ("pct_too_few_errors", "{{ '%s %s' % ('a',) }}", {}),
    ("pct_bad_type_errors", "{{ '%d' % 'x' }}", {}),
    ("pct_llama2", "{{ bos + '[INST] %s [/INST]' % msg.strip() }}", {"bos": "<s>", "msg": "  hi  "}),
    # --- globals ---
    ("g_range", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}", {}),
    ("g_dict", "{{ dict(a=1, b='x') }} {{ dict({'k': 1}) }}", {}),
    ("g_raise", "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}", {}),
    ("g_raise_after_output", "partial {% if true %}{{ raise_exception('bad: ' ~ 1) }}{% endif %}", {}),
    ("g_strftime", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%B %d, %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A %a %j %p %I %y %e') }}|{{ strftime_now('%-d/%-m') }}", {}),
    ("g_strftime_defined", "{{ strftime_now is defined }}", {}),
    # --- generation block ---
    ("generation_block", "A{% generation %}B{{ 1 }}{% endgeneration %}C", {}),
    # --- chat-like ---
    ("chat_roles_alternate",
     "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('alternate!') }}{% endif %}{{ m.content }}{% endfor %}",
     {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
    ("chat_messages_slice_system",
     "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set msgs = messages[1:] %}{% else %}{% set msgs = messages %}{% endif %}"
     "<<{{ sys }}>>{% for m in msgs %}[{{ m.role }}:{{ m.content }}]{% endfor %}", {"messages": MSGS}),
    ("chat_reversed_last_query",
     "{% set ns = namespace(idx=messages|length - 1) %}{% for m in messages[::-1] %}{% set i = (messages|length - 1) - loop.index0 %}"
     "{% if m.role == 'user' and ns.idx == messages|length - 1 %}{% set ns.idx = i %}{% endif %}{% endfor %}{{ ns.idx }}",
     {"messages": MSGS + [{"role": "assistant", "content": "x"}]}),
]


def main():
    env = make_env()
    out = []
    names = set()
    for name, source, variables in CASES:
        assert name not in names, name
        names.add(name)
        case = {"name": name, "template": source, "vars": variables}
        try:
            case["expected"] = env.from_string(source).render(**variables)
        except Exception as e:  # jinja2 raised: the engine must fail too
            case["error"] = type(e).__name__
            case["message"] = str(e)
        out.append(case)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jinja2_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"jinja2_version": jinja2.__version__, "cases": out}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("%d cases (%d errors) -> %s" % (len(out), sum(1 for c in out if "error" in c), path))


if __name__ == "__main__":
    main()
