import pytest

from fer_bench import labels as L


@pytest.mark.parametrize("name", sorted(L.NATIVE_TABLES))
def test_native_tables_are_one_to_one_and_name_consistent(name):
    table = L.NATIVE_TABLES[name]
    assert len(set(table.to_canonical)) == len(table.to_canonical)
    for native_name, cid in zip(table.native_names, table.to_canonical, strict=True):
        resolve = L.compound_id if table.compound else L.expression_id
        assert resolve(native_name) == cid, (name, native_name)


def test_rafdb_first_line_maps_to_the_spec_example():
    # RAF-DB 'train_00001.jpg 4' is 1-based Happiness -> canonical happy = 1
    assert L.NATIVE_TABLES["rafdb"].canonical(4 - 1) == 1


def test_non_injective_table_is_refused():
    with pytest.raises(ValueError, match="one-to-one"):
        L.NativeTable("bad", ("a", "b"), (1, 1))


def test_aliases_and_spaces():
    assert [L.expression_id(n) for n in ("Angry", "happiness", "Surprised", "SADNESS")] == [6, 1, 3, 2]
    assert L.compound_id("Happily_Surprised") == 0 and L.compound_id("sadly-angry") == 3
    assert L.class_names("basic7")[0] == "neutral" and len(L.space("basic8")) == 8
    assert L.class_names("compound")[14] == "awed"
    with pytest.raises(KeyError, match="unknown expression"):
        L.expression_id("bored")
    with pytest.raises(ValueError, match="outside"):
        L.NATIVE_TABLES["fer2013"].canonical(7)
