/* web.js - the page around cnn.wasm, cnn.h compiled to WebAssembly from
   examples/web/web.c by `make web`.

   Every answer comes from cnn.h inside the module: the page hands it the
   bytes of a picture file or of a model file, or the pixels of the drawing
   canvas, and draws what it leaves behind (probabilities, the prepared input,
   the first conv layer's feature maps). For tests and users' scripts:
   #prediction holds the top class's name and probability, and the body's
   data-answers counts the answers and errors so far; #prediction's data-ms
   is the time from an upload to its answer on screen, the body's
   data-first-ms the time from the page's start to its first answer. */
"use strict";

(() => {
    const $ = (id) => document.getElementById(id);
    const canvas = $("canvas");
    const pen = canvas.getContext("2d", { willReadFrequently: true });
    let wasm = null;       // the module's exports
    let info = null;       // the model: input c, h, w; classes; maps
    let source = null;     // what the answer is about: "drawing" or a file { name, bytes }
    let drawn = false;     // anything on the canvas
    let answers = 0;

    /* WASI: the module still imports a few of wasi_snapshot_preview1's
       functions, for files it never opens here. The page gives it none:
       each answers EBADF ("no such file descriptor"), which also ends the C
       library's search for preopened folders at start; proc_exit stops. */
    const wasi = new Proxy({}, {
        get: (_, name) => (name === "proc_exit" ? (code) => { throw new Error(`cnn.wasm exited (${code})`); } : () => 8),
    });

    const memory = () => new Uint8Array(wasm.memory.buffer);
    const floats = (pointer, count) => new Float32Array(wasm.memory.buffer, pointer, count).slice();
    const string = (pointer) => {
        const bytes = memory();
        let end = pointer;
        while (bytes[end]) end++;
        return new TextDecoder().decode(bytes.subarray(pointer, end));
    };
    /* Runs call(pointer, size) with data copied into the module's memory. */
    function withBytes(data, call) {
        const pointer = data.length ? wasm.web_alloc(data.length) : 0;
        if (data.length && !pointer) return -1;
        memory().set(data, pointer);
        try {
            return call(pointer, data.length);
        } finally {
            wasm.web_free(pointer);
        }
    }
    /* cnn.h's message, naming the file where it says "in memory". */
    function message(name, failed) {
        const text = failed < 0 ? "out of memory" : string(wasm.web_error());
        const named = text.replace(/the image in memory|'<memory>'|<memory>/g, `'${name}'`);
        return named === text ? `'${name}': ${text}` : named;
    }

    function count() {
        document.body.dataset.answers = String(++answers);
    }
    function clearAnswer() {
        $("prediction").textContent = "";
        $("top5").replaceChildren();
        const view = $("input-view");
        view.getContext("2d").clearRect(0, 0, view.width, view.height);
        for (const map of $("maps").children) map.getContext("2d").clearRect(0, 0, map.width, map.height);
    }
    function showError(text) {
        clearAnswer();
        $("error").textContent = text;
        count();
    }

    /* ---- the model */

    function readInfo() {
        const values = new Int32Array(wasm.memory.buffer, wasm.web_info(), 12);
        info = {
            c: values[0], h: values[1], w: values[2], classes: values[3], names: values[4],
            mapsLayer: values[5], mapsC: values[6], mapsH: values[7], mapsW: values[8],
            mapsTitle: string(wasm.web_maps_title()),
        };
    }

    function describeModel(name) {
        const names = ["class numbers", "names from the model", "EMNIST's characters"][info.names];
        $("model-info").textContent =
            `Model ${name}: input ${info.c} \u00d7 ${info.h} \u00d7 ${info.w}, ${info.classes} classes (${names}).`;
        document.body.dataset.classes = String(info.classes);
        const view = $("input-view");
        view.width = info.w;
        view.height = info.h;
        $("input-caption").textContent = `its input, ${info.c === 1 ? "grey" : "RGB"} ${info.w} \u00d7 ${info.h}`;
        const maps = $("maps");
        maps.replaceChildren();
        if (info.mapsLayer < 0) {
            $("maps-caption").textContent = "this model has no conv layer";
            return;
        }
        for (let i = 0; i < info.mapsC; i++) {
            const map = document.createElement("canvas");
            map.width = info.mapsW;
            map.height = info.mapsH;
            maps.appendChild(map);
        }
        $("maps-caption").textContent =
            `${info.mapsTitle}: ${info.mapsC} feature maps of ${info.mapsW} \u00d7 ${info.mapsH}`;
    }

    function loadModel(bytes, name) {
        const failed = withBytes(bytes, (pointer, size) => wasm.web_load_model(pointer, size));
        if (failed) {
            showError(message(name, failed));
            return false;
        }
        readInfo();
        describeModel(name);
        predictAgain();
        return true;
    }

    /* ---- answers */

    function draw(target, values, channels, height, width, low, high) {
        const image = new ImageData(width, height), plane = width * height, scale = high > low ? 255 / (high - low) : 0;
        for (let i = 0; i < plane; i++) {
            for (let k = 0; k < 3; k++) image.data[4 * i + k] = (values[(channels === 3 ? k * plane : 0) + i] - low) * scale;
            image.data[4 * i + 3] = 255;
        }
        target.getContext("2d").putImageData(image, 0, 0);
    }

    function showAnswer() {
        const probabilities = floats(wasm.web_probabilities(), info.classes);
        /* most probable first; of equal ones the lower class first, as predict */
        const order = [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a] || a - b);
        const percent = (k) => `${(100 * probabilities[k]).toFixed(2)}%`;
        $("error").textContent = "";
        $("prediction").textContent = `${string(wasm.web_class_name(order[0]))} ${percent(order[0])}`;
        $("top5").replaceChildren(...order.slice(0, 5).map((k) => {
            const item = document.createElement("li"), name = document.createElement("span");
            const bar = document.createElement("span"), fill = document.createElement("span");
            const value = document.createElement("span");
            name.className = "name";
            name.textContent = string(wasm.web_class_name(k));
            bar.className = "bar";
            fill.style.width = `${100 * probabilities[k]}%`;
            bar.appendChild(fill);
            value.className = "value";
            value.textContent = percent(k);
            item.append(name, bar, value);
            return item;
        }));
        draw($("input-view"), floats(wasm.web_prepared(), info.c * info.h * info.w), info.c, info.h, info.w, 0, 1);
        if (info.mapsLayer >= 0) {
            const plane = info.mapsH * info.mapsW, maps = floats(wasm.web_maps(), info.mapsC * plane);
            let low = Infinity, high = -Infinity;
            for (const v of maps) {
                low = Math.min(low, v);
                high = Math.max(high, v);
            }
            [...$("maps").children].forEach((map, i) =>
                draw(map, maps.subarray(i * plane, (i + 1) * plane), 1, info.mapsH, info.mapsW, low, high));
        }
        if (!document.body.dataset.firstMs) document.body.dataset.firstMs = performance.now().toFixed(1);
        count();
    }

    function predictDrawing() {
        if (!wasm || !info) return;
        source = "drawing";
        if (!drawn) { // nothing to answer
            clearAnswer();
            $("error").textContent = "";
            count();
            return;
        }
        const pixels = pen.getImageData(0, 0, canvas.width, canvas.height).data;
        const failed = withBytes(pixels, (pointer, size) => wasm.web_predict_pixels(pointer, size, canvas.width, canvas.height));
        if (failed) showError(message("the drawing", failed));
        else showAnswer();
    }

    function predictFile(file) {
        const failed = withBytes(file.bytes, (pointer, size) => wasm.web_predict_file(pointer, size));
        if (failed) {
            showError(message(file.name, failed));
            return false;
        }
        source = file;
        showAnswer();
        return true;
    }

    function predictAgain() {
        if (source && source !== "drawing") predictFile(source);
        else predictDrawing();
    }

    /* ---- files: pictures and models, chosen or dropped */

    const isPicture = (file) => file.type.startsWith("image/") || /\.(png|jpe?g|gif|bmp|tga|psd|p[gpn]m)$/i.test(file.name);

    async function upload(file, started) {
        $("prediction").dataset.ms = "";
        const bytes = new Uint8Array(await file.arrayBuffer());
        if (!wasm || !info) return showError("the model is not loaded yet");
        if (!predictFile({ name: file.name, bytes })) return;
        requestAnimationFrame(() => {
            $("prediction").dataset.ms = (performance.now() - started).toFixed(1);
        });
        /* the picture on the canvas, fitted; drawing on it then asks about both */
        fillPaper();
        try {
            const picture = await createImageBitmap(file);
            const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
            const w = picture.width * scale, h = picture.height * scale;
            pen.drawImage(picture, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
        } catch {
            pen.fillStyle = "#666";
            pen.textAlign = "center";
            pen.font = "16px sans-serif";
            pen.fillText("(the browser cannot show it)", canvas.width / 2, canvas.height / 2);
        }
        drawn = true;
    }

    async function openModel(file) {
        const bytes = new Uint8Array(await file.arrayBuffer());
        if (wasm) loadModel(bytes, file.name);
    }

    function openFile(file, started) {
        if (isPicture(file)) upload(file, started);
        else openModel(file);
    }

    $("upload").addEventListener("change", (event) => {
        const file = event.target.files[0];
        event.target.value = ""; // the same file chosen again is a new upload
        if (file) upload(file, event.timeStamp);
    });
    $("model-file").addEventListener("change", (event) => {
        const file = event.target.files[0];
        event.target.value = "";
        if (file) openModel(file);
    });
    document.addEventListener("dragover", (event) => {
        event.preventDefault();
        document.body.classList.add("dropping");
    });
    document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
    document.addEventListener("drop", (event) => {
        event.preventDefault();
        document.body.classList.remove("dropping");
        const file = event.dataTransfer.files[0];
        if (file) openFile(file, event.timeStamp);
    });

    /* ---- drawing, with a mouse, a pen or a finger */

    function fillPaper() {
        pen.fillStyle = "#fff";
        pen.fillRect(0, 0, canvas.width, canvas.height);
    }
    function inkStyle() {
        pen.strokeStyle = "#111";
        pen.lineWidth = canvas.width / 14;
        pen.lineCap = "round";
        pen.lineJoin = "round";
    }
    function stroke(points) {
        inkStyle();
        pen.beginPath();
        pen.moveTo(points[0][0], points[0][1]);
        for (const [x, y] of points.length > 1 ? points.slice(1) : points) pen.lineTo(x, y);
        pen.stroke();
        drawn = true;
    }

    let scheduled = false;
    function schedule() {
        if (scheduled) return;
        scheduled = true;
        requestAnimationFrame(() => {
            scheduled = false;
            predictDrawing();
        });
    }

    let last = null;
    const point = (event) => {
        const box = canvas.getBoundingClientRect();
        return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
    };
    canvas.addEventListener("pointerdown", (event) => {
        event.preventDefault();
        canvas.setPointerCapture(event.pointerId);
        last = point(event);
        stroke([last]);
        schedule();
    });
    canvas.addEventListener("pointermove", (event) => {
        if (!last) return;
        const points = [last];
        for (const e of event.getCoalescedEvents ? event.getCoalescedEvents() : [event]) points.push(point(e));
        if (points.length === 1) points.push(point(event));
        stroke(points);
        last = points[points.length - 1];
        schedule();
    });
    const lift = () => {
        last = null;
    };
    canvas.addEventListener("pointerup", lift);
    canvas.addEventListener("pointercancel", lift);

    $("clear").addEventListener("click", () => {
        fillPaper();
        drawn = false;
        predictDrawing();
    });

    /* An "A" in three strokes, so that the page answers at once. */
    function drawExample() {
        const s = canvas.width / 280;
        const strokes = [[[70, 235], [140, 45], [210, 235]], [[100, 165], [180, 165]]];
        fillPaper();
        for (const points of strokes) stroke(points.map(([x, y]) => [x * s, y * s]));
    }

    /* ---- start: the module, the model (model.cnn next to the page, or
       index.html?model=PATH for another on the same site), EMNIST's mapping */

    async function start() {
        fillPaper();
        const fetchBytes = (url) => fetch(url).then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(`HTTP ${r.status}`))));
        const asked = new URL(new URLSearchParams(location.search).get("model") || "model.cnn", location.href);
        const modelName = decodeURIComponent(asked.pathname.split("/").pop());
        const mapping = fetchBytes("emnist-balanced-mapping.txt").catch(() => null);
        const model = asked.origin !== location.origin ? new Error("the page loads models from its own site only")
            : fetchBytes(asked.href).catch((error) => error);
        try {
            const imports = { wasi_snapshot_preview1: wasi };
            /* compiled while it downloads, where the server says application/wasm */
            const module = await WebAssembly.instantiateStreaming(fetch("cnn.wasm"), imports)
                .catch(async () => WebAssembly.instantiate(await fetchBytes("cnn.wasm"), imports));
            wasm = module.instance.exports;
            wasm._initialize();
        } catch (error) {
            $("model-info").textContent = "";
            showError(`cnn.wasm did not load: ${error.message}`);
            return;
        }
        const map = await mapping;
        if (map) withBytes(new Uint8Array(map), (pointer, size) => wasm.web_load_mapping(pointer, size));
        const bytes = await model;
        if (bytes instanceof Error) {
            $("model-info").textContent = "No model yet: load a .cnn file.";
            showError(`'${modelName}' did not load: ${bytes.message}`);
            return;
        }
        drawExample();
        loadModel(new Uint8Array(bytes), modelName);
    }
    start();
})();
