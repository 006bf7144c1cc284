"""SS-MIX2 standardized storage: tree walking and directory import.

SS-MIX2 標準化ストレージ 仕様書 (JAMI / 日本医療情報学会, Ver. 1.2h), section 3
("標準化ストレージ構成"): https://www.jami.jp/jamistd/docs/SS-MIX2/
"""
