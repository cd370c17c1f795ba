{#- A multi-column primary key: returns each combination of `columns` that occurs more than once. -#}
{% test unique_combination(model, columns) %}
{%- set quoted = [] -%}
{%- for column in columns -%}
    {%- do quoted.append(adapter.quote(column)) -%}
{%- endfor %}
select {{ quoted | join(", ") }}, count(*) as occurrences
from {{ model }}
group by {{ quoted | join(", ") }}
having count(*) > 1
{% endtest %}
