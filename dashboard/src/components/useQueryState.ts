import { useCallback, useEffect, useState } from "react";

/**
 * A piece of page state kept in the URL's query string (replaceState), so a
 * filtered view can be bookmarked and shared. Empty values are left out.
 */
export function useQueryState(name: string, fallback = ""): [string, (v: string) => void] {
  const read = () => new URLSearchParams(window.location.search).get(name) ?? fallback;
  const [value, setValue] = useState(read);
  useEffect(() => {
    const onPop = () => setValue(read());
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [name]);
  const set = useCallback(
    (v: string) => {
      const q = new URLSearchParams(window.location.search);
      if (v === fallback || v === "") q.delete(name);
      else q.set(name, v);
      const qs = q.toString();
      window.history.replaceState(null, "", `${window.location.pathname}${qs ? `?${qs}` : ""}`);
      setValue(v);
    },
    [name, fallback],
  );
  return [value, set];
}
