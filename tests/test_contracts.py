import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moon_cli.contracts import BOXES, CATALOG, check_schema, conform
from moon_cli.errors import MoonError
from moon_cli.io import read_table

from conftest import run_moon


def catalog_table(**overrides):
    data = {
        "item_id": ["a", "b"],
        "title": ["red mug", "blue tee"],
        "category_path": [["Home", "Kitchen", "Mug"], ["Apparel", "Tops", "T-shirt"]],
        "attributes": [[{"name": "color", "value": "red"}], []],
        "image_paths": [["a.jpg"], ["b.jpg", "b2.jpg"]],
    }
    data.update(overrides)
    return pa.table(data)


def test_missing_column_names_file_column_and_type(tmp_path):
    path = tmp_path / "cat.parquet"
    pq.write_table(catalog_table().drop_columns(["title"]), path)
    with pytest.raises(MoonError) as err:
        read_table(path, CATALOG)
    msg = str(err.value.message)
    assert "\n" not in msg
    assert str(path) in msg and "'title'" in msg and "string" in msg


def test_mistyped_column_is_named():
    table = catalog_table(category_path=[1, 2])
    with pytest.raises(MoonError, match=r"column 'category_path' has type int64, expected list<item: string>"):
        check_schema(table.schema, CATALOG, "x.parquet")


def test_compatible_types_are_cast_and_extra_columns_pass_through():
    boxes = pa.table({"image_path": ["a.jpg"], "bbox": pa.array([[1, 2, 3, 4]], pa.list_(pa.int64())),
                      "my_extra": ["kept"]})
    out = conform(boxes, BOXES, "boxes.parquet")
    assert out.schema.field("bbox").type == BOXES.field("bbox").type
    assert out.column("bbox").to_pylist() == [[1.0, 2.0, 3.0, 4.0]]
    assert out.column("my_extra").to_pylist() == ["kept"]


def test_non_nullable_column_with_nulls_is_refused():
    with pytest.raises(MoonError, match="'item_id' has 1 null"):
        conform(catalog_table(item_id=["a", None]), CATALOG, "cat.parquet")


def test_cli_reports_missing_column_in_one_line(tmp_path):
    path = tmp_path / "cat.parquet"
    pq.write_table(catalog_table().drop_columns(["image_paths"]), path)
    result = run_moon("inspect", path, "--contract", "catalog")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "'image_paths'" in lines[0]


def test_not_a_parquet_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cat.parquet"
    path.write_text("hello")
    result = run_moon("inspect", path)
    assert result.exit_code == 1 and "not a readable Parquet file" in result.output
