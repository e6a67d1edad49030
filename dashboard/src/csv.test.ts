import { describe, expect, it } from "vitest";
import { toCsv } from "./csv";

describe("toCsv", () => {
  it("quotes what needs quoting and defuses formulas", () => {
    expect(toCsv(["a", "b"], [["x,y", 'say "hi"'], [1n, -5], ["=SUM(A1)", "line\nbreak"]])).toBe(
      'a,b\r\n"x,y","say ""hi"""\r\n1,-5\r\n\'=SUM(A1),"line\nbreak"\r\n',
    );
  });
});
