// Runs models that cnn.h exported to ONNX in ONNX Runtime (onnxruntime-web,
// its WebAssembly build, in Node.js) and compares ONNX Runtime's outputs with
// the ones cnn.h computed. Nothing is downloaded: tests/onnx/setup.sh installs
// the package, wasm files included, and this program only reads files.
//   node tests/onnx/check.mjs NPMDIR CASEDIR NAME...
// NPMDIR is the folder setup.sh installed into; for each NAME it reads
// CASEDIR/NAME.onnx and CASEDIR/NAME.io. The .io file (written by the C test):
//   8 bytes   "CNNIO1\n\0"
//   5 x u32   batch, c, h, w, outputs (per sample), little-endian
//   float32   input, batch*c*h*w values (NCHW), little-endian
//   float32   expected output, batch*outputs values, little-endian
// The model must have one input "input" of shape [N, c, h, w] with N dynamic,
// and one output "output" of shape [N, outputs] (or [N, C, H, W] with
// C * H * W = outputs). Each case runs twice: the
// whole batch, then the first sample alone (two copies of it when the batch
// is 1), which proves the batch dimension really is dynamic.
// Prints one line per case; exits 0 when all pass, 1 when any case fails
// (model does not load or run, wrong names or shapes, a difference above
// TOLERANCE), 2 on usage errors, a missing package, or a missing or malformed
// .io file (2 wins over 1: the C side wrote its own test data wrong).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const TOLERANCE = 1e-5; // absolute, on every output value
const MAGIC = 'CNNIO1\n\0';
const HEADER_BYTES = 8 + 5 * 4;

class Usage extends Error {} // exit 2

// ONNX Runtime's messages span lines; a case keeps to one
const oneLine = (e) => String(e && e.message ? e.message : e).replace(/\s+/g, ' ').trim();

// Reads NAME.io, checking every field; returns { batch, c, h, w, outputs,
// input: Float32Array, expected: Float32Array }.
function readIo(path) {
    let bytes;
    try {
        bytes = readFileSync(path);
    } catch (e) {
        throw new Usage(`cannot read ${path}: ${e.message}`);
    }
    if (bytes.length < HEADER_BYTES || bytes.toString('latin1', 0, 8) !== MAGIC)
        throw new Usage(`${path}: not a .io file (no "CNNIO1\\n\\0" magic)`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const names = ['batch', 'c', 'h', 'w', 'outputs'];
    const io = {};
    names.forEach((name, i) => {
        io[name] = view.getUint32(8 + 4 * i, true);
        if (io[name] === 0) throw new Usage(`${path}: byte ${8 + 4 * i}: ${name} is 0`);
    });
    // counts as Numbers: exact up to 2^53, far above any file that fits in memory
    const inputCount = io.batch * io.c * io.h * io.w;
    const outputCount = io.batch * io.outputs;
    const want = HEADER_BYTES + 4 * (inputCount + outputCount);
    if (bytes.length !== want)
        throw new Usage(`${path}: ${bytes.length} bytes, but its header ` +
            `(batch ${io.batch}, ${io.c}x${io.h}x${io.w}, ${io.outputs} outputs) needs ${want}`);
    const floats = (offset, count) => {
        const a = new Float32Array(count);
        for (let i = 0; i < count; i++) a[i] = view.getFloat32(offset + 4 * i, true);
        return a;
    };
    io.input = floats(HEADER_BYTES, inputCount);
    io.expected = floats(HEADER_BYTES + 4 * inputCount, outputCount);
    return io;
}

// Runs `samples` (a Float32Array of n samples) and returns the largest
// |difference| from `expected` (n*outputs values); throws on a wrong shape.
async function runAndCompare(ort, session, io, n, samples, expected) {
    const feeds = { input: new ort.Tensor('float32', samples, [n, io.c, io.h, io.w]) };
    let results;
    try {
        results = await session.run(feeds);
    } catch (e) {
        throw new Error(`batch ${n}: ${oneLine(e)}`);
    }
    const out = results.output;
    const dims = `[${out.dims.join(', ')}]`;
    // [N, outputs] after a flatten or dense layer, else [N, C, H, W] with C * H * W outputs
    const perSample = out.dims.slice(1).reduce((a, b) => a * b, 1);
    if (out.type !== 'float32' || out.dims.length < 2 || out.dims[0] !== n || perSample !== io.outputs)
        throw new Error(`batch ${n}: output is ${out.type} ${dims}, want float32 [${n}, ...] with ${io.outputs} values a sample`);
    let max = 0;
    for (let i = 0; i < expected.length; i++)
        max = Math.max(max, Math.abs(out.data[i] - expected[i])); // a NaN sticks, and fails the case
    return max;
}

// Checks one case; returns 0 (pass), 1 (fail) or 2 (bad .io), having printed its line.
async function checkCase(ort, version, caseDir, name) {
    let io;
    try {
        io = readIo(join(caseDir, `${name}.io`));
    } catch (e) {
        if (!(e instanceof Usage)) throw e;
        console.log(`${name}: FAIL ${e.message}`);
        return 2;
    }
    let session;
    try {
        session = await ort.InferenceSession.create(join(caseDir, `${name}.onnx`), {
            executionProviders: ['wasm'],
            logSeverityLevel: 3, // errors only: warnings would split the one line per case
        });
    } catch (e) {
        console.log(`${name}: FAIL ONNX Runtime ${version} cannot load ${name}.onnx: ${oneLine(e)}`);
        return 1;
    }
    try {
        if (session.inputNames.join() !== 'input' || session.outputNames.join() !== 'output')
            throw new Error(`inputs [${session.inputNames}] and outputs [${session.outputNames}], ` +
                'want one input "input" and one output "output"');
        const perSample = io.c * io.h * io.w;
        const whole = await runAndCompare(ort, session, io, io.batch, io.input, io.expected);
        // a batch of another size: the first sample alone, or twice when the file holds one
        const n = io.batch === 1 ? 2 : 1;
        const samples = new Float32Array(n * perSample);
        const expected = new Float32Array(n * io.outputs);
        for (let i = 0; i < n; i++) {
            samples.set(io.input.subarray(0, perSample), i * perSample);
            expected.set(io.expected.subarray(0, io.outputs), i * io.outputs);
        }
        const other = await runAndCompare(ort, session, io, n, samples, expected);
        const worst = Math.max(whole, other);
        const ok = worst <= TOLERANCE;
        console.log(`${name}: ${ok ? '' : 'FAIL '}ONNX Runtime ${version}, batch ${io.batch} and ${n}, ` +
            `max |difference| ${worst.toExponential(1)} (tolerance ${TOLERANCE.toExponential(0)})`);
        return ok ? 0 : 1;
    } catch (e) {
        console.log(`${name}: FAIL ONNX Runtime ${version}: ${oneLine(e)}`);
        return 1;
    } finally {
        await session.release();
    }
}

async function main(args) {
    if (args.length < 3) throw new Usage('usage: node tests/onnx/check.mjs NPMDIR CASEDIR NAME...');
    const [npmDir, caseDir, ...names] = args;
    let ort;
    try {
        // the package's "node" entry, resolved from NPMDIR rather than from this file
        ort = createRequire(join(resolve(npmDir), 'package.json'))('onnxruntime-web');
    } catch (e) {
        throw new Usage(`cannot load onnxruntime-web from ${npmDir} ` +
            `(run tests/onnx/setup.sh ${npmDir} first): ${e.message.split('\n')[0]}`);
    }
    ort.env.wasm.numThreads = 1; // no worker threads: they would keep Node alive
    ort.env.wasm.proxy = false;  // no proxy worker either
    ort.env.logLevel = 'error';
    const version = ort.env.versions.web;
    let status = 0;
    for (const name of names) status = Math.max(status, await checkCase(ort, version, caseDir, name));
    return status;
}

main(process.argv.slice(2)).then(
    (status) => process.exit(status),
    (e) => {
        console.error(e instanceof Usage ? `check.mjs: ${e.message}` : e);
        process.exit(2);
    });
