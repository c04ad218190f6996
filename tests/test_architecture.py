"""The package's shape: imports between its modules form no cycle, and the lower layers import no upper one."""

import ast
import subprocess
import sys
import unittest
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / 'racetrack_job_wrapper'
PACKAGE = 'racetrack_job_wrapper'
# Modules that only the entry layer may import: they run the server.
ENTRY = {'cli', 'standalone', 'workers', 'testing', '__main__'}
# Modules every other module may import; they import none of the upper layers themselves.
BASE = {'messages', 'logs', 'tracing', 'settings', 'manifest', 'yamlsub', 'convert', 'typeinfo', 'serialize', 'records'}


def module_imports() -> dict[str, set[str]]:
    """Each module of the package (dotted, without the package name) and the package modules it imports at run time."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE_DIR.rglob('*.py'):
        name = '.'.join(path.relative_to(PACKAGE_DIR).with_suffix('').parts).removesuffix('.__init__')
        tree = ast.parse(path.read_text(encoding='utf-8'))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test):
                node.body = []  # imports for the type checker only
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                module = node.module.removeprefix(PACKAGE).lstrip('.')
                if module:
                    imported.add(module)
                else:
                    imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(
                    alias.name.removeprefix(PACKAGE + '.')
                    for alias in node.names
                    if alias.name.startswith(PACKAGE + '.')
                )
        graph[name] = imported - {name}
    return graph


class ArchitectureTest(unittest.TestCase):
    def test_no_import_cycle(self):
        graph = module_imports()
        done: set[str] = set()

        def visit(module: str, path: list[str]) -> None:
            if module in path:
                self.fail('import cycle: ' + ' -> '.join(path[path.index(module) :] + [module]))
            if module in done:
                return
            for target in sorted(graph.get(module, ())):
                visit(target, path + [module])
            done.add(module)

        for module in sorted(graph):
            visit(module, [])

    def test_only_the_entry_layer_imports_the_entry_modules(self):
        for module, imported in module_imports().items():
            if module not in ENTRY:
                self.assertFalse(imported & ENTRY, f'{module} imports {sorted(imported & ENTRY)}')

    def test_the_base_layer_imports_only_the_base_layer(self):
        graph = module_imports()
        for module in BASE:
            outside = graph[module] - BASE - {'__init__', 'endpoint_config'}
            self.assertFalse(outside, f'{module} imports {sorted(outside)}')

    def test_importing_the_package_imports_no_other_module(self):
        # Every submodule import runs the package first; a job importing one submodule pays only for it.
        code = 'import sys; known = {*sys.modules}; import racetrack_job_wrapper; print(sorted({*sys.modules} - known))'
        out = subprocess.run(
            [sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=PACKAGE_DIR.parent
        )
        self.assertEqual(out.stdout.strip(), "['racetrack_job_wrapper']")


if __name__ == '__main__':
    unittest.main()
