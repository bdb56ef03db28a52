// Run tests/telemetry/pyodide_machine.py inside Pyodide under Node.js.
//
// Usage: node [--experimental-websocket] pyodide_machine.mjs PYODIDE_DIR
//            KERNEL_DIR RPYC_DIR URL
//
// Copies the asyncmachine package and rpyc (pure Python) into Pyodide's
// in-memory filesystem and awaits pyodide_machine.main(URL) with
// runPythonAsync. Prints the JSON that main() returns; exits 1 when it raises.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SCRIPT_DIR = path.dirname(fileURLToPath(import.meta.url));
const SITE_DIR = "/lib/asyncmachine-telemetry-test";

function copyTree(pyodide, hostDir, targetDir) {
  pyodide.FS.mkdirTree(targetDir);
  for (const entry of fs.readdirSync(hostDir)) {
    if (entry === "__pycache__" || entry.endsWith(".pyc")) {
      continue;
    }
    const hostPath = path.join(hostDir, entry);
    const targetPath = `${targetDir}/${entry}`;
    if (fs.statSync(hostPath).isDirectory()) {
      copyTree(pyodide, hostPath, targetPath);
    } else {
      pyodide.FS.writeFile(targetPath, fs.readFileSync(hostPath));
    }
  }
}

async function main() {
  const [pyodideDir, kernelDir, rpycDir, url] = process.argv.slice(2);
  if (url === undefined) {
    process.stderr.write("usage: pyodide_machine.mjs PYODIDE_DIR KERNEL_DIR RPYC_DIR URL\n");
    process.exit(2);
  }
  const { loadPyodide } = await import(
    pathToFileURL(path.join(pyodideDir, "pyodide.mjs")).href
  );
  const pyodide = await loadPyodide({ indexURL: pyodideDir + path.sep });
  copyTree(pyodide, path.join(kernelDir, "asyncmachine"), `${SITE_DIR}/asyncmachine`);
  copyTree(pyodide, rpycDir, `${SITE_DIR}/rpyc`);
  pyodide.FS.writeFile(
    `${SITE_DIR}/pyodide_machine.py`,
    fs.readFileSync(path.join(SCRIPT_DIR, "pyodide_machine.py")),
  );
  const globals = pyodide.toPy({ site_dir: SITE_DIR, server_url: url });
  const output = await pyodide.runPythonAsync(
    [
      "import sys",
      "sys.path.insert(0, site_dir)",
      "import pyodide_machine",
      "await pyodide_machine.main(server_url)",
    ].join("\n"),
    { globals },
  );
  process.stdout.write(`${output}\n`);
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`pyodide_machine: ${error?.stack ?? error}\n`);
  process.exit(1);
});
