{#- A value as a standard SQL string literal: single quotes doubled. PostgreSQL runs with
    standard_conforming_strings on (the default since 9.1), so backslashes need nothing. -#}
{% macro sql_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
