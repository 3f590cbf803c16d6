"""The Slicer package contains exactly what the module folder holds, and the panel's .ui
matches the code that drives it."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "NSN2NDenoise"


def listed_in_cmake(variable):
    text = (MODULE / "CMakeLists.txt").read_text()
    block = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return {line.strip().replace("${MODULE_NAME}", "NSN2NDenoise")
            for line in block.splitlines() if line.strip()}


def test_every_python_file_is_listed():
    on_disk = {str(p.relative_to(MODULE)) for p in MODULE.rglob("*.py")
               if "__pycache__" not in p.parts}
    assert on_disk == listed_in_cmake("MODULE_PYTHON_SCRIPTS")


def test_every_resource_is_listed():
    # Resources/ and the engine's package data (the shipped network weights).
    on_disk = {str(p.relative_to(MODULE)) for p in
               [*(MODULE / "Resources").rglob("*"), *(MODULE / "nsn2n").rglob("weights/*")]
               if p.is_file()}
    assert on_disk == listed_in_cmake("MODULE_PYTHON_RESOURCES")


def test_the_pip_package_ships_the_weights_and_nothing_of_the_benchmarks():
    import tomllib

    project = tomllib.loads((MODULE.parent / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    patterns = setuptools["package-data"]["nsn2n"]
    weights = [p.relative_to(MODULE / "nsn2n") for p in (MODULE / "nsn2n").rglob("*.pt")]
    assert weights and all(any(w.match(pattern) for pattern in patterns) for w in weights)
    assert setuptools["packages"]["find"] == {"where": ["NSN2NDenoise"], "include": ["nsn2n*"]}
    assert not (MODULE / "nsn2n" / "bench").exists()


def test_module_cmake_registers_generic_and_self_tests():
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_cmake_metadata():
    text = (MODULE.parent / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                "EXTENSION_DESCRIPTION", "EXTENSION_CONTRIBUTORS"):
        assert re.search(rf'set\({key} "[^"]+"\)', text), key
    assert 'set(EXTENSION_CATEGORY "Filtering")' in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert "add_subdirectory(NSN2NDenoise)" in text


def ui_widgets():
    tree = ET.parse(MODULE / "Resources" / "UI" / "NSN2NDenoise.ui")
    return {w.get("name"): w for w in tree.iter("widget")}


def test_ui_parses_and_has_every_widget_the_code_uses():
    widgets = ui_widgets()
    code = (MODULE / "NSN2NDenoise.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", code))
    assert used and used <= set(widgets), used - set(widgets)


def test_ui_parameter_bindings_match_the_parameter_node():
    code = (MODULE / "NSN2NDenoise.py").read_text()
    block = code.split("class NSN2NDenoiseParameterNode:")[1].split("\nclass ")[0]
    fields = set(re.findall(r"^    (\w+):", block, re.M))
    bound = set()
    for widget in ui_widgets().values():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound.add(prop.find("string").text)
    assert bound == fields


def test_icons_are_png_of_the_right_size():
    import struct

    for path in (MODULE.parent / "NSN2NDenoise.png", MODULE / "Resources/Icons/NSN2NDenoise.png"):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (128, 128)


# The Extensions Index's submission checklist (Slicer/ExtensionsIndex,
# .github/PULL_REQUEST_TEMPLATE.md), the items that can be checked without the network.
CATALOG_SCHEMA_KEYS = {"$schema", "category", "scm_url", "scm_revision", "scm_type",
                       "build_dependencies", "build_subdirectory", "enabled", "tier"}


def cmake_value(key):
    text = (MODULE.parent / "CMakeLists.txt").read_text()
    return re.search(rf'set\({key} "([^"]+)"\)', text).group(1)


def test_catalog_entry_follows_the_schema_and_declares_pytorch():
    import json

    entry = json.loads((MODULE.parent / "Resources" / "ExtensionsIndex"
                        / "NSN2NDenoise.json").read_text())
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert {"$schema", "category", "scm_url"} <= set(entry) <= CATALOG_SCHEMA_KEYS
    assert entry["build_dependencies"] == ["PyTorch"] == cmake_value("EXTENSION_DEPENDS").split()
    assert entry["category"] == cmake_value("EXTENSION_CATEGORY")
    assert 1 <= entry["tier"] <= 5 and entry["scm_revision"] == "main"  # a branch, not a hash
    homepage = cmake_value("EXTENSION_HOMEPAGE").split("#")[0]
    assert entry["scm_url"] == homepage + ".git"


def test_repository_is_named_slicer_plus_the_extension_name():
    name = re.search(r"project\((\w+)\)", (MODULE.parent / "CMakeLists.txt").read_text())
    assert cmake_value("EXTENSION_HOMEPAGE").split("#")[0].endswith("/Slicer" + name.group(1))


def test_icon_and_screenshot_urls_name_files_of_this_repository():
    def local(url):
        path = url.split("/main/", 1)[1]
        assert url.startswith("https://raw.githubusercontent.com/") and (MODULE.parent / path).is_file(), url

    local(cmake_value("EXTENSION_ICONURL"))
    screenshots = cmake_value("EXTENSION_SCREENSHOTURLS").split()
    assert screenshots
    for url in screenshots:
        local(url)


def test_description_is_one_or_two_sentences():
    sentences = [s for s in re.split(r"(?<=\.)\s+", cmake_value("EXTENSION_DESCRIPTION")) if s]
    assert 1 <= len(sentences) <= 3  # the last one: "Runs on the CPU or a GPU."


def test_readme_has_what_the_checklist_asks_of_the_homepage():
    readme = (MODULE.parent / "README.md").read_text()
    assert readme.startswith("# NSN2NDenoise")
    assert re.search(r"!\[[^\]]*\]\(Resources/Screenshots/\w+\.png\)", readme)  # an image
    assert "## In 3D Slicer" in readme  # the module and how to use it
    assert "arXiv" in readme  # the publications
    assert "Apache" in readme and (MODULE.parent / "LICENSE").is_file()
    license_text = (MODULE.parent / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
