{#- A column's `min`/`max` constraint: returns the rows outside [min_value, max_value].
    Nulls pass: whether a column may be null is the `not_null` constraint's business. -#}
{% test in_range(model, column_name, min_value=none, max_value=none) %}
{%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error("in_range on " ~ column_name ~ " needs min_value or max_value") }}
{%- endif %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and (
    {%- if min_value is not none %} {{ column_name }} < {{ min_value | float }}{% endif %}
    {%- if min_value is not none and max_value is not none %} or{% endif %}
    {%- if max_value is not none %} {{ column_name }} > {{ max_value | float }}{% endif %}
  )
{% endtest %}
