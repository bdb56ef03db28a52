// Run a Python test module inside Pyodide under Node.js, without JSPI.
//
// Usage: node [--experimental-websocket] run_module.mjs PYODIDE_DIR
//            KERNEL_DIR RPYC_DIR MODULE_FILE URL
//
// Copies the asyncmachine package, rpyc (pure Python) and MODULE_FILE into
// Pyodide's in-memory filesystem, then awaits MODULE.main(URL) with
// runPythonAsync, so that nothing needs asyncio.run() or JSPI. Prints what
// main() returns on stdout; exits 1 when it raises, 2 on a usage error.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

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
  const [pyodideDir, kernelDir, rpycDir, moduleFile, url] = process.argv.slice(2);
  if (url === undefined) {
    process.stderr.write(
      "usage: run_module.mjs PYODIDE_DIR KERNEL_DIR RPYC_DIR MODULE_FILE URL\n",
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
  const pyodide = await loadPyodide({ indexURL: pyodideDir + path.sep });

  copyTree(pyodide, path.join(kernelDir, "asyncmachine"), `${SITE_DIR}/asyncmachine`);
  copyTree(pyodide, rpycDir, `${SITE_DIR}/rpyc`);
  const moduleName = path.basename(moduleFile, ".py");
  pyodide.FS.writeFile(`${SITE_DIR}/${moduleName}.py`, fs.readFileSync(moduleFile));

  const globals = pyodide.toPy({
    site_dir: SITE_DIR,
    module_name: moduleName,
    server_url: url,
  });
  const output = await pyodide.runPythonAsync(
    [
      "import importlib",
      "import sys",
      "sys.path.insert(0, site_dir)",
      "module = importlib.import_module(module_name)",
      "await module.main(server_url)",
    ].join("\n"),
    { globals },
  );
  process.stdout.write(`${output}\n`);
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`run_module: ${error?.stack ?? error}\n`);
  process.exit(1);
});
