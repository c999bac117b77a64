package bench

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestWriteSVGIsWellFormed(t *testing.T) {
	var b strings.Builder
	if err := WriteSVG(&b, fixedReport()); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(b.String()))
	bars, texts := 0, []string{}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
		switch el := tok.(type) {
		case xml.StartElement:
			for _, a := range el.Attr {
				if el.Name.Local == "rect" && a.Name.Local == "class" && a.Value == "bar" {
					bars++
				}
			}
		case xml.CharData:
			texts = append(texts, string(el))
		}
	}
	// Frames/s: pingpong and flood, two backends each (idle has no rate);
	// p99: pingpong only.
	if bars != 6 {
		t.Errorf("drew %d bars, want 6", bars)
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"uring", "epoll", "pingpong-p50-w16", "flood-1k", "FAILED", "Test CPU <3GHz>", "frames/s, log scale"} {
		if !strings.Contains(all, want) {
			t.Errorf("chart text lacks %q", want)
		}
	}
}

func TestWriteSVGWithoutData(t *testing.T) {
	r := fixedReport()
	r.Points = r.Points[:1] // idle only: nothing to plot in either panel
	var b strings.Builder
	if err := WriteSVG(&b, r); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal([]byte(b.String()), new(struct{})); err != nil {
		t.Fatalf("not well-formed XML: %v", err)
	}
	if strings.Count(b.String(), "no data for this panel") != 2 {
		t.Errorf("empty panels are not labelled:\n%s", b.String())
	}
}
