// Run tests/relay/pyodide_page.py inside Pyodide under Node.js, as the page's
// side of a listen tunnel.
//
// Usage: node [--experimental-websocket] pyodide_page.mjs PYODIDE_DIR
//            KERNEL_DIR RPYC_DIR RELAY_URL TOKEN
//
// Copies the asyncmachine package and rpyc (pure Python) into Pyodide's
// in-memory file system and awaits pyodide_page.main(RELAY_URL, TOKEN) with
// runPythonAsync. Python's print() reaches stdout line by line; the last line
// is the JSON that main() returns. Exits 1 when main() raises.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SCRIPT_DIR = path.dirname(fileURLToPath(import.meta.url));
const SITE_DIR = "/lib/asyncmachine-test";

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
  const [pyodideDir, kernelDir, rpycDir, relayUrl, token] = process.argv.slice(2);
  if (token === undefined) {
    process.stderr.write(
      "usage: pyodide_page.mjs PYODIDE_DIR KERNEL_DIR RPYC_DIR RELAY_URL TOKEN\n",
    );
    process.exit(2);
  }
  if (typeof WebSocket === "undefined") {
    process.stderr.write("this Node.js has no global WebSocket; pass --experimental-websocket\n");
    process.exit(2);
  }

  const { loadPyodide } = await import(
    pathToFileURL(path.join(pyodideDir, "pyodide.mjs")).href
  );
  const pyodide = await loadPyodide({
    indexURL: pyodideDir + path.sep,
    stdout: (line) => process.stdout.write(`${line}\n`),
  });

  copyTree(pyodide, path.join(kernelDir, "asyncmachine"), `${SITE_DIR}/asyncmachine`);
  copyTree(pyodide, rpycDir, `${SITE_DIR}/rpyc`);
  pyodide.FS.writeFile(
    `${SITE_DIR}/pyodide_page.py`,
    fs.readFileSync(path.join(SCRIPT_DIR, "pyodide_page.py")),
  );

  const globals = pyodide.toPy({ site_dir: SITE_DIR, relay_url: relayUrl, token });
  const output = await pyodide.runPythonAsync(
    [
      "import sys",
      "sys.path.insert(0, site_dir)",
      "import pyodide_page",
      "await pyodide_page.main(relay_url, token)",
    ].join("\n"),
    { globals },
  );
  process.stdout.write(`${output}\n`);
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`pyodide_page: ${error?.stack ?? error}\n`);
  process.exit(1);
});
