"""Microsoft Graph calendar client (app-only auth over aiohttp).

Outlook is off by default (`[outlook] enabled = false`): every action works on the database
alone. The Graph client itself arrives with the meetings work.
"""
