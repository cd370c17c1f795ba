{#- dbt's accepted_values pastes each value between quotes as it is, so a value holding a quote
    breaks the SQL. Same test, values quoted with sql_literal. Product projects list this package
    before `dbt` in their `dispatch` search order, which makes dbt's accepted_values call this. -#}
{% macro default__test_accepted_values(model, column_name, values, quote=True) %}
with all_values as (
    select {{ column_name }} as value_field, count(*) as n_records
    from {{ model }}
    group by {{ column_name }}
)
select *
from all_values
where value_field not in (
    {%- for value in values %}
    {% if quote %}{{ datamesh_platform.sql_literal(value) }}{% else %}{{ value }}{% endif %}
    {%- if not loop.last %},{% endif %}
    {%- endfor %}
)
{% endmacro %}
