#!/usr/bin/python3
"""The web page in a real browser (headless Chromium through Selenium).

A server with API keys holds a small ingested collection (a tiny encoder
trained here, 300 Fashion-MNIST images with thumbnails) and a code-only
collection. The test opens the page and checks:
  - without a key every call is refused and the page asks for one; a wrong
    key is refused again; the right key loads the collections;
  - an uploaded image shows k thumbnails (blob URLs fetched with the key)
    whose ids, distances and labels equal the HTTP API's answer for the same
    image, and what the encoder made of the query;
  - an out-of-distribution image shows its flag, an in-distribution one not;
  - a random stored item finds itself at distance 0;
  - a collection without an encoder is searched by code and shows items
    without thumbnails.
It saves a screenshot of the page (argument 2, default ./page.png).

usage: page_test.py HAMDB_BINARY [SCREENSHOT.png]
Needs Debian's chromium, chromium-driver and python3-selenium
(scripts/install-deps.sh); run it with /usr/bin/python3, where selenium lives.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    sys.exit("page_test: python3-selenium is missing; run scripts/install-deps.sh "
             "and use /usr/bin/python3")

READ_KEY, ADMIN_KEY = "reader-secret", "admin-secret"
K = 8


def fail(msg):
    raise AssertionError(msg)


def png_of(rows):
    """A grey PNG of a list of rows of 0..255 values."""
    h, w = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Server:
    def __init__(self, hamdb, db, log):
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [hamdb, "serve", "--db", db, "--port", "0", "--threads", "2",
             "--api-key", ADMIN_KEY, "--read-api-key", READ_KEY],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = None
        for _ in range(300):
            m = re.search(r"listening on (http://\S+)", open(log).read())
            if m:
                self.url = m.group(1)
                try:
                    urllib.request.urlopen(self.url + "/readyz", timeout=2)
                    return
                except (urllib.error.URLError, ConnectionError):
                    pass
            if self.proc.poll() is not None:
                fail("the server exited: " + open(log).read()[-2000:])
            time.sleep(0.1)
        fail("the server did not get ready")

    def call(self, method, path, body=None, content_type="application/json", key=READ_KEY):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + key)
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def make_driver(work):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
              "--user-data-dir=" + os.path.join(work, "chrome-profile")):
        opts.add_argument(a)
    if os.geteuid() == 0:
        opts.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def main():
    hamdb = os.path.abspath(sys.argv[1])
    shot = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "page.png")
    work = tempfile.mkdtemp(prefix="hamdb_page_test_")
    server = driver = None
    try:
        run = lambda *a: subprocess.run([hamdb, *a], cwd=work, check=True, capture_output=True)
        run("export-dataset", "fashion-mnist", "--out", "imgs", "--split", "train", "--limit", "300")
        run("export-dataset", "fashion-mnist", "--out", "imgs", "--split", "test", "--limit", "40")
        run("train", "--dataset", "fashion-mnist", "--limit", "400", "--bits", "16", "--epochs1", "1",
            "--epochs2", "1", "--seed", "1", "--threads", "2", "--no-eval", "--out", "m.hdbe")
        run("ingest", "--db", "db", "-c", "fashion", "-m", "m.hdbe", "--images", "imgs/train")
        server = Server(hamdb, os.path.join(work, "db"), os.path.join(work, "serve.log"))
        server.call("POST", "/collections", {"name": "codes", "bits": 16}, key=ADMIN_KEY)
        server.call("POST", "/collections/codes/items",
                    {"items": [{"id": i, "code": "%04x" % (i * 4099 % 65536), "label": i % 3}
                               for i in range(20)]}, key=ADMIN_KEY)

        driver = make_driver(work)
        wait = WebDriverWait(driver, 30)
        el = lambda id_: driver.find_element(By.ID, id_)

        # 1. No key: refused, and the page asks for one; a wrong key is refused too.
        driver.get(server.url + "/")
        wait.until(lambda d: el("key-form").is_displayed() and "API key" in el("error").text)
        print("page without a key:", el("error").text)
        for key, expect in (("wrong-key", "refused"), (READ_KEY, None)):
            el("key").clear()
            el("key").send_keys(key)
            el("key-form").submit()
            if expect:
                wait.until(lambda d: expect in el("error").text)
                print("page with a wrong key:", el("error").text)
        wait.until(lambda d: len(Select(el("collection")).options) == 2)
        if driver.execute_script("return location.href").find(READ_KEY) >= 0:
            fail("the key appears in the page's URL")
        Select(el("collection")).select_by_value("fashion")
        wait.until(lambda d: "300 items" in el("figures").text)
        print("figures:", el("figures").text)

        # 2. Upload an image: the grid equals the API's answer.
        el("k").clear()
        el("k").send_keys(str(K))
        test_dir = os.path.join(work, "imgs", "test")
        test_images = sorted(os.path.join(r, f) for r, _, fs in os.walk(test_dir) for f in fs)
        in_dist = None
        for path in test_images:
            q = server.call("POST", "/collections/fashion/search?k=1", open(path, "rb").read(), "image/png")
            if not q["query"]["ood"]:
                in_dist = path
                break
        if in_dist is None:
            fail("no test image is in distribution for the test encoder")

        def upload(path):
            driver.execute_script("document.getElementById('results').removeAttribute('data-ready')")
            el("file").send_keys(path)
            wait.until(lambda d: el("results").get_attribute("data-ready") is not None or el("error").is_displayed())
            if el("error").is_displayed():
                fail("the page shows an error: " + el("error").text)

        def grid():
            hits = driver.find_elements(By.CSS_SELECTOR, "#results .hit")
            return [(int(h.get_attribute("data-id")), int(h.get_attribute("data-distance")),
                     h.get_attribute("data-label")) for h in hits]

        upload(in_dist)
        api = server.call("POST", "/collections/fashion/search?k=%d&with_metadata=true" % K,
                          open(in_dist, "rb").read(), "image/png")
        want = [(r["id"], r["distance"], str(r.get("label", ""))) for r in api["results"]]
        got = grid()
        print("grid  (id, distance, label):", got)
        print("API   (id, distance, label):", want)
        if got != want:
            fail("the grid differs from the API's answer")
        if len(got) != K:
            fail("expected %d results, got %d" % (K, len(got)))
        imgs = driver.find_elements(By.CSS_SELECTOR, "#results .hit img")
        loaded = [driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                  for i in imgs]
        if len(imgs) != K or not all(loaded) or not all(i.get_attribute("src").startswith("blob:") for i in imgs):
            fail("expected %d thumbnails loaded from blob URLs, got %s" % (K, loaded))
        labels_shown = [h.find_element(By.CLASS_NAME, "label").text
                        for h in driver.find_elements(By.CSS_SELECTOR, "#results .hit")]
        print("labels shown:", labels_shown)
        q = api["query"]
        info = el("query-info").text
        print("query info:", info.replace("\n", " | "))
        if q["class_name"] not in info or q["decoding"] not in info or el("ood").text != "no":
            fail("the query's class, decoding and OOD flag are not shown as the API gives them")
        driver.save_screenshot(shot)
        print("screenshot:", shot)

        # 3. An out-of-distribution image shows its flag.
        noise = [[(x * 73 + y * 151 + x * y * 37) % 256 for x in range(28)] for y in range(28)]
        ood_path = os.path.join(work, "noise.png")
        open(ood_path, "wb").write(png_of(noise))
        if not server.call("POST", "/collections/fashion/search?k=1", png_of(noise), "image/png")["query"]["ood"]:
            fail("the API does not flag the noise image as out of distribution")
        upload(ood_path)
        if el("ood").text != "out of distribution" or "ood" not in el("ood").get_attribute("class"):
            fail("the OOD flag is not shown: " + el("ood").text)
        print("noise image:", el("ood").text)

        # 4. A random stored item finds itself (distance 0).
        driver.execute_script("document.getElementById('results').removeAttribute('data-ready')")
        el("random").click()
        wait.until(lambda d: el("results").get_attribute("data-ready") is not None or el("error").is_displayed())
        first = grid()[0]
        if first[1] != 0 or not el("query-image").is_displayed():
            fail("a random item should come with its thumbnail and find itself at distance 0: %s" % (first,))
        print("random item: first hit", first, "|", el("query-info").text.split("\n")[1])

        # 5. A collection without an encoder: by code, no thumbnails.
        Select(el("collection")).select_by_value("codes")
        wait.until(lambda d: "20 items" in el("figures").text and el("file").get_attribute("disabled"))
        el("code").send_keys("%04x" % (5 * 4099 % 65536))
        driver.execute_script("document.getElementById('results').removeAttribute('data-ready')")
        el("code-form").submit()
        wait.until(lambda d: el("results").get_attribute("data-ready") is not None or el("error").is_displayed())
        got = grid()
        api = server.call("POST", "/collections/codes/search", {"code": "%04x" % (5 * 4099 % 65536), "k": K})
        if [g[:2] for g in got] != [(r["id"], r["distance"]) for r in api["results"]] or got[0][:2] != (5, 0):
            fail("the code search differs from the API: %s" % (got,))
        if len(driver.find_elements(By.CSS_SELECTOR, "#results .no-thumb")) != K:
            fail("items without thumbnails should show placeholders")
        print("code-only collection: %d results, first %s, no thumbnails" % (len(got), got[0]))
        print("page_test: OK")
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
