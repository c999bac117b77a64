package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// SaveReport writes the report into dir as ringbench-<UTC time>.json, and
// overwrites latest.json and latest.svg there. Each file is written to a
// .tmp name first and renamed, so a reader never sees half a file. It
// returns the paths written.
func SaveReport(dir string, r *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	js = append(js, '\n')
	var svg bytes.Buffer
	if err := WriteSVG(&svg, r); err != nil {
		return nil, err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"ringbench-" + r.Started.UTC().Format("20060102T150405Z") + ".json", js},
		{"latest.json", js},
		{"latest.svg", svg.Bytes()},
	}
	var paths []string
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := writeAtomic(path, f.data); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
