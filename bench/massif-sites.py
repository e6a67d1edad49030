#!/usr/bin/env python3
# Per-stream heap by allocation site: the difference of two massif detailed
# snapshots (bench/profile-idle.sh), attributed to the first frame of an
# interesting crate (ours, pingora, hyper, reqwest, tokio, bytes) on the path
# from the allocation up.
#   massif-sites.py BEFORE.massif AFTER.massif STREAMS
import re,sys,collections
pat=re.compile(r'^( *)n(\d+): (\d+) (.*)$')
def parse(path):
    lines=open(path).read().split('\n')
    # find the detailed snapshot heap_tree
    start=[i for i,l in enumerate(lines) if l.startswith('heap_tree=detailed')]
    lines=lines[start[-1]+1:]
    nodes=[]
    for l in lines:
        m=pat.match(l)
        if not m: 
            if nodes: break
            continue
        nodes.append((len(m.group(1)),int(m.group(3)),m.group(4)))
    return nodes
interesting=re.compile(r'(tollgate_dp::[\w:]+|pingora_\w+::[\w:<> ]+|hyper::[\w:]+|hyper_util::[\w:]+|reqwest::[\w:]+|h2::[\w:]+|tokio::runtime::task::[\w:]+|tokio::io::[\w:]+|bytes::[\w:]+|moka::[\w:]+|tracing\w*::[\w:]+)')
def sites(nodes):
    agg=collections.Counter()
    # walk: stack of (depth, matched)
    stack=[]
    for depth,b,desc in nodes:
        while stack and stack[-1][0]>=depth: stack.pop()
        matched=any(s[1] for s in stack)
        m=None if matched else interesting.search(desc)
        if m and not matched:
            loc=re.search(r'\(([^()]*:\d+)\)\s*$',desc)
            key=m.group(1)[:110]+(' @'+loc.group(1) if loc else '')
            agg[key]+=b
        stack.append((depth, matched or bool(m)))
    return agg
a=sites(parse(sys.argv[1])); b=sites(parse(sys.argv[2])); n=int(sys.argv[3])
diff={k:b[k]-a.get(k,0) for k in b}
tot=sum(v for v in diff.values())
for k,v in sorted(diff.items(), key=lambda kv:-kv[1])[:25]:
    print(f"{v/n:9.0f} B/stream  {k}")
