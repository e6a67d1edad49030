import { afterEach, describe, expect, it } from "vitest";
import { cleanup, render, screen } from "@testing-library/react";
import { BarChart, niceMax } from "./BarChart";

afterEach(cleanup);

const series = [
  { label: "input", color: "#00f" },
  { label: "output", color: "#f80" },
];

describe("BarChart", () => {
  it("rounds the axis up to 1, 2 or 5 × 10ⁿ", () => {
    expect([niceMax(0), niceMax(7), niceMax(10), niceMax(11), niceMax(230), niceMax(0.03)]).toEqual([1, 10, 10, 20, 500, 0.05]);
  });

  it("draws one stacked bar per point, heights proportional to the values", () => {
    const { container } = render(
      <BarChart
        title="Tokens per day"
        series={series}
        points={[
          { label: "11-01", values: [30, 10] },
          { label: "11-02", values: [0, 0] },
          { label: "11-03", values: [60, 20] },
        ]}
      />,
    );
    expect(screen.getAllByTestId("bar")).toHaveLength(3);
    expect(screen.getByRole("img", { name: /Tokens per day/ })).toBeTruthy();
    const heights = [...container.querySelectorAll("rect")].map((r) => Number(r.getAttribute("height")));
    // Empty bars draw nothing; 80 on an axis of 100 fills 80% of the plot.
    expect(heights).toHaveLength(4);
    expect(heights[2] / heights[0]).toBeCloseTo(2, 5);
    expect(heights[3] / heights[1]).toBeCloseTo(2, 5);
    expect((heights[2] + heights[3]) / (174 * 0.8)).toBeCloseTo(1, 5);
    // Tooltips and the table carry the exact numbers.
    expect(container.querySelector("title")?.textContent).toBe("11-01: input 30, output 10");
    const rows = screen.getAllByRole("row");
    expect(rows[rows.length - 1].textContent).toBe("11-036020");
    expect(container.querySelector(".legend")?.textContent).toBe(" input output");
  });

  it("says so when there is nothing to draw", () => {
    render(<BarChart title="Cost per day" series={series} points={[]} />);
    expect(screen.getByText("No data in this window.")).toBeTruthy();
    expect(screen.queryByRole("img")).toBeNull();
  });

  it("never draws below the axis for negative values", () => {
    const { container } = render(<BarChart title="t" series={[series[0]]} points={[{ label: "a", values: [-5] }, { label: "b", values: [5] }]} />);
    const rects = [...container.querySelectorAll("rect")];
    expect(rects).toHaveLength(1);
    expect(Number(rects[0].getAttribute("y")) + Number(rects[0].getAttribute("height"))).toBeCloseTo(12 + 174, 5);
  });
});
