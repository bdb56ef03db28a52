// Run the core's behaviour cases inside Pyodide under Node.js.
//
// Usage, from anywhere:
//
//   node tests/pyodide/run_cases.mjs [HARNESS OPTIONS] [--] RUNNER ARGS...
//
// The harness behaves like `python -m tests.cases RUNNER ARGS...` run from the
// repository root, but inside Pyodide (the npm package pinned in package.json
// next to this file, installed by `make install`). It copies the repository's
// kernel/ and tests/ trees into Pyodide's in-memory filesystem at their host
// paths, so tracebacks show host paths and relative paths resolve from the
// repository root. A runner argument that names an existing host file or
// directory is copied in the same way and passed as an absolute path.
//
// Harness options, accepted only before the first runner argument:
//   --root DIR     repository to copy in (default: two levels above this file)
//   --module NAME  module to run as __main__ (default: tests.cases)
//   --no-jspi      do not enable WebAssembly stack switching (JSPI)
//   --             end of harness options
//
// asyncio.run() in Pyodide 314.0.6 needs JSPI (WebAssembly stack switching),
// and Node.js 20 has it only behind --experimental-wasm-stack-switching. When
// JSPI is off, the harness starts Node.js again with the JSPI flag that
// `node --v8-options` lists: --experimental-wasm-jspi (newer V8, not tried
// here) or --experimental-wasm-stack-switching (tried on Node.js 20.20).
//
// Environment variables named AM_* are passed to Python's os.environ. The exit
// code is the runner's: SystemExit's code, 0 on a normal return, 1 on an
// uncaught exception, and 2 when the harness itself cannot start.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const PYODIDE_VERSION = "314.0.6";
const HARNESS_DIR = path.dirname(fileURLToPath(import.meta.url));
const PYODIDE_DIR = path.join(HARNESS_DIR, "node_modules", "pyodide");
const REEXEC_ENV = "AM_PYODIDE_JSPI_REEXEC";
const COPIED_TREES = ["kernel", "tests"];
const SKIPPED_DIRS = new Set([
  "node_modules",
  "__pycache__",
  ".pytest_cache",
  ".hypothesis",
  ".mypy_cache",
  ".ruff_cache",
]);

function fail(message) {
  process.stderr.write(`pyodide-harness: error: ${message}\n`);
  process.exit(2);
}

function log(message) {
  process.stderr.write(`pyodide-harness: ${message}\n`);
}

function parseArgs(argv) {
  const options = {
    root: path.resolve(HARNESS_DIR, "..", ".."),
    module: "tests.cases",
    jspi: true,
    runnerArgs: [],
  };
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i];
    if (arg === "--") {
      i += 1;
      break;
    } else if (arg === "--no-jspi") {
      options.jspi = false;
      i += 1;
    } else if (arg === "--root" || arg === "--module") {
      const value = argv[i + 1];
      if (value === undefined) {
        fail(`missing value for option ${arg}`);
      }
      if (arg === "--root") {
        options.root = path.resolve(value);
      } else {
        options.module = value;
      }
      i += 2;
    } else {
      break;
    }
  }
  options.runnerArgs = argv.slice(i);
  return options;
}

function jspiAvailable() {
  // The same feature test that Pyodide runs: the new and the old JSPI API.
  return "Suspending" in WebAssembly || "Suspender" in WebAssembly;
}

function jspiNodeFlag() {
  const result = spawnSync(process.execPath, ["--v8-options"], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const v8Options = result.stdout ?? "";
  for (const flag of [
    "--experimental-wasm-jspi",
    "--experimental-wasm-stack-switching",
  ]) {
    if (v8Options.includes(`${flag} `)) {
      return flag;
    }
  }
  return null;
}

// Start this script again in a Node.js process with JSPI turned on, and exit
// with its status. Returns only when no such flag is known to this Node.js.
function reexecWithJspi() {
  const flag = jspiNodeFlag();
  if (flag === null) {
    log(`Node.js ${process.version} has no JSPI flag; continuing without JSPI`);
    return;
  }
  const script = fileURLToPath(import.meta.url);
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, flag, script, ...process.argv.slice(2)],
    { stdio: "inherit", env: { ...process.env, [REEXEC_ENV]: flag } },
  );
  if (child.error) {
    fail(`failed to start ${process.execPath} ${flag}: ${child.error.message}`);
  }
  process.exit(child.status ?? 1);
}

function checkPyodidePackage() {
  const manifest = path.join(PYODIDE_DIR, "package.json");
  if (!fs.existsSync(manifest)) {
    fail(
      `npm package pyodide not found in ${PYODIDE_DIR}; run \`make install\` ` +
        "in the repository root",
    );
  }
  const version = JSON.parse(fs.readFileSync(manifest, "utf8")).version;
  if (version !== PYODIDE_VERSION) {
    fail(
      `npm package pyodide is ${version} in ${PYODIDE_DIR}, expected ` +
        `${PYODIDE_VERSION}; run \`make install\` in the repository root`,
    );
  }
}

// Write all bytes to a file descriptor. Synchronous writes keep stdout and
// stderr complete when the process exits right after the runner.
function writeAll(fd, bytes) {
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += fs.writeSync(fd, bytes, offset, bytes.length - offset);
    } catch (error) {
      if (error.code !== "EAGAIN") {
        throw error;
      }
    }
  }
  return bytes.length;
}

function copyIntoPyodide(pyodide, hostPath) {
  const stat = fs.statSync(hostPath);
  if (stat.isDirectory()) {
    pyodide.FS.mkdirTree(hostPath);
    for (const entry of fs.readdirSync(hostPath)) {
      if (SKIPPED_DIRS.has(entry) || entry.endsWith(".pyc")) {
        continue;
      }
      copyIntoPyodide(pyodide, path.join(hostPath, entry));
    }
  } else if (stat.isFile()) {
    pyodide.FS.mkdirTree(path.dirname(hostPath));
    pyodide.FS.writeFile(hostPath, fs.readFileSync(hostPath));
  }
}

// Python code run with runPythonAsync, so that asyncio.run() inside the runner
// may switch stacks when JSPI is on. Returns the runner's exit code.
const RUN_MODULE = `
import os
import runpy
import sys
import traceback

def _harness_exit_code(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1

sys.path[:0] = [harness_root, os.path.join(harness_root, "kernel")]
os.chdir(harness_root)
sys.argv = ["-m", *harness_args]
print(
    "pyodide-harness: Python %d.%d.%d (%s)" % (*sys.version_info[:3], sys.platform),
    file=sys.stderr,
)
try:
    runpy.run_module(harness_module, run_name="__main__", alter_sys=True)
    harness_exit_code = 0
except SystemExit as error:
    harness_exit_code = _harness_exit_code(error.code)
except BaseException:
    traceback.print_exc()
    harness_exit_code = 1
finally:
    sys.stdout.flush()
    sys.stderr.flush()
harness_exit_code
`;

async function main() {
  const options = parseArgs(process.argv.slice(2));

  if (options.jspi && !jspiAvailable() && !process.env[REEXEC_ENV]) {
    reexecWithJspi();
  }
  checkPyodidePackage();
  for (const tree of COPIED_TREES) {
    const treePath = path.join(options.root, tree);
    if (!fs.statSync(treePath, { throwIfNoEntry: false })?.isDirectory()) {
      fail(`${treePath} is not a directory; pass the repository with --root DIR`);
    }
  }

  const { loadPyodide } = await import(
    pathToFileURL(path.join(PYODIDE_DIR, "pyodide.mjs")).href
  );
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => name.startsWith("AM_")),
  );
  const pyodide = await loadPyodide({
    indexURL: PYODIDE_DIR + path.sep,
    env: { HOME: "/home/pyodide", ...env },
  });
  pyodide.setStdout({ write: (bytes) => writeAll(1, bytes) });
  pyodide.setStderr({ write: (bytes) => writeAll(2, bytes) });
  pyodide.setStdin({ error: true });
  log(
    `Pyodide ${pyodide.version} on Node.js ${process.version}, JSPI ` +
      (jspiAvailable() ? "on" : "off"),
  );

  for (const tree of COPIED_TREES) {
    copyIntoPyodide(pyodide, path.join(options.root, tree));
  }
  const runnerArgs = options.runnerArgs.map((arg) => {
    const hostPath = path.resolve(arg);
    if (arg.startsWith("-") || !fs.existsSync(hostPath)) {
      return arg;
    }
    copyIntoPyodide(pyodide, hostPath);
    return hostPath;
  });

  const globals = pyodide.toPy({
    harness_root: options.root,
    harness_module: options.module,
    harness_args: runnerArgs,
  });
  const exitCode = await pyodide.runPythonAsync(RUN_MODULE, {
    globals,
    filename: "<pyodide-harness>",
  });
  process.exit(exitCode);
}

main().catch((error) => {
  process.stderr.write(`pyodide-harness: error: ${error?.stack ?? error}\n`);
  process.exit(2);
});
