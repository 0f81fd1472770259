// Package browsertest opens canarylab's HTML reports in a real headless
// Chromium (Debian's chromium, driven over the DevTools protocol with
// chromedp) for tests: it loads the page, fails on a script error or on
// any request beyond the page itself (a report must be self-contained),
// measures the charts as laid out, and takes a screenshot that must not
// be blank.
package browsertest

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browsers are the executables tried, in order.
var Browsers = []string{"chromium", "chromium-browser", "google-chrome"}

// Chart is a chart as the browser laid it out.
type Chart struct {
	Title         string
	Width, Height float64
	// Marks counts the chart's drawn marks (paths, circles, polygons).
	Marks int
}

// Page is what the browser saw of a page.
type Page struct {
	Title  string
	Charts []Chart
	// Text is the page's visible text.
	Text string
	// Screenshot is the full page as a PNG, and Image decoded.
	Screenshot []byte
	Image      image.Image
	// ScreenshotPath is where the screenshot was saved.
	ScreenshotPath string
}

// Open loads the HTML file at path in headless Chromium and returns what
// it saw. Without a browser the test is skipped, or fails when CI=true:
// CI installs chromium with `make test-deps`. The screenshot is saved in
// $CANARYLAB_SCREENSHOTS when set (for people to look at), else in the
// test's temporary directory.
func Open(t testing.TB, path string) *Page {
	t.Helper()
	exe := ""
	for _, b := range Browsers {
		if p, err := exec.LookPath(b); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		msg := "no headless browser (" + strings.Join(Browsers, ", ") + "): install Debian's chromium (make test-deps)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("report path %s: %v", path, err)
	}
	pageURL := (&url.URL{Scheme: "file", Path: abs}).String()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests may run as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1200, 900), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	var mu sync.Mutex
	var problems []string
	// The listener runs on the tab's reader: record and return.
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "script exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, "console error")
			}
		case *network.EventRequestWillBeSent:
			if u := e.Request.URL; u != pageURL && !strings.HasPrefix(u, "data:") {
				problems = append(problems, "the page fetched "+u+": a report must be self-contained")
			}
		}
	}
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithListener(listen))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("load %s in %s: %v", path, exe, err)
	}
	p := &Page{}
	if p.Title, err = chromedp.Run(ctx, chromedp.Title()); err != nil {
		t.Fatalf("read the title of %s: %v", path, err)
	}
	if p.Text, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`)); err != nil {
		t.Fatalf("read the text of %s: %v", path, err)
	}
	if p.Charts, err = chromedp.Run(ctx, chromedp.Evaluate[[]Chart](`Array.from(document.querySelectorAll("svg.chart")).map(s => {
		const r = s.getBoundingClientRect();
		return {Title: s.getAttribute("aria-label") || "", Width: r.width, Height: r.height,
			Marks: s.querySelectorAll("path, circle, polygon").length};
	})`)); err != nil {
		t.Fatalf("measure the charts of %s: %v", path, err)
	}
	if p.Screenshot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if p.Image, err = png.Decode(bytes.NewReader(p.Screenshot)); err != nil {
		t.Fatalf("decode the screenshot of %s: %v", path, err)
	}
	dir := os.Getenv("CANARYLAB_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshot directory: %v", err)
	}
	p.ScreenshotPath = filepath.Join(dir, strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))+".png")
	if err := os.WriteFile(p.ScreenshotPath, p.Screenshot, 0o644); err != nil {
		t.Fatalf("save the screenshot: %v", err)
	}
	t.Logf("%s: %d charts, screenshot %dx%d at %s", path, len(p.Charts), p.Image.Bounds().Dx(), p.Image.Bounds().Dy(), p.ScreenshotPath)

	mu.Lock()
	defer mu.Unlock()
	for _, pr := range problems {
		t.Errorf("%s: %s", path, pr)
	}
	return p
}

// Colours counts the distinct colours of an image, sampling every step-th
// pixel both ways: a blank or failed render has one or two.
func Colours(img image.Image, step int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += step {
		for x := b.Min.X; x < b.Max.X; x += step {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
		}
	}
	return len(seen)
}

// CheckCharts fails t unless the page has at least min charts, each laid
// out with a visible size and drawn marks.
func (p *Page) CheckCharts(t testing.TB, min int) {
	t.Helper()
	if len(p.Charts) < min {
		t.Errorf("the page has %d charts, want at least %d", len(p.Charts), min)
	}
	for _, c := range p.Charts {
		if c.Width < 200 || c.Height < 100 || c.Marks == 0 {
			t.Errorf("chart %q laid out %gx%g px with %d marks: want a visible, drawn chart", c.Title, c.Width, c.Height, c.Marks)
		}
	}
	if n := Colours(p.Image, 7); n < 16 {
		t.Errorf("the screenshot has %d colours: the page did not render", n)
	}
}
